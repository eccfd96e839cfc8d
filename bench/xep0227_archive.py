"""Time and peak memory of ``xmppd export --xep0227`` and of reading the file back, on a
generated room archive (default 1,000,000 messages) in an SQLite database.

    .venv/bin/python bench/xep0227_archive.py [--messages N] [--dir DIR]

Each phase runs in a process of its own, so its peak RSS is its own: fill (the rows,
through ``MucStore.write_batch``), export (``XmppdSource`` → ``write_xep0227``), read (one
pass of ``Xep0227Source`` per kind, counting records). Everything is local files; the
temporary directory is removed afterwards unless ``--dir`` names one.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOMAIN, MUC = "example.org", "conference.example.org"


def _fill(url: str, messages: int) -> str:
    from xmppd.muc.roomconfig import RoomSettings
    from xmppd.storage import Database
    from xmppd.storage.muc import MucStore, Write

    db = Database(url)
    db.upgrade()
    store = MucStore(db)
    store.write_batch(
        [
            Write(
                "room",
                {
                    "name": "lobby",
                    "settings_json": RoomSettings().to_json(),
                    "subject": "",
                    "subject_nick": "",
                },
            )
        ]
    )
    start = datetime(2020, 1, 1)
    batch = []
    for i in range(messages):
        batch.append(Write("message", {
            "room": "lobby", "stanza_id": f"{1577836800000000 + i}", "nick": f"user{i % 50}",
            "stamp": start + timedelta(milliseconds=i), "sender": f"user{i % 50}@{DOMAIN}",
            "origin_id": None, "stanza": "<message xmlns=\"jabber:client\" from=\"lobby@"
            f"{MUC}/user{i % 50}\" type=\"groupchat\"><body>message number {i}, some words "
            "of an ordinary chat line</body></message>",
        }))  # fmt: skip
        if len(batch) == 10_000:
            store.write_batch(batch)
            batch = []
    store.write_batch(batch)
    db.dispose()
    return f"{messages} room messages"


def _export(url: str, path: str) -> str:
    from xmppd.migrate.xep0227_writer import write_xep0227
    from xmppd.migrate.xmppd_source import XmppdSource
    from xmppd.storage import Database

    db = Database(url)
    with open(path, "wb") as out:
        result = write_xep0227(XmppdSource(db, DOMAIN, MUC), out)
    db.dispose()
    size = Path(path).stat().st_size
    return f"{sum(result.counts.values())} records, {size / 2**20:.0f} MiB file"


def _read(path: str) -> str:
    from xmppd.migrate.model import Kind
    from xmppd.migrate.xep0227 import Xep0227Source

    source = Xep0227Source(Path(path))
    total = sum(1 for kind in Kind for _ in source.read(kind))
    return f"{total} records"


def _phase(name: str, args: tuple[object, ...], out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    began = time.monotonic()
    what = {"fill": _fill, "export": _export, "read": _read}[name](*args)  # type: ignore[operator]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put((name, time.monotonic() - began, rss, what))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, help="keep the database and file here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xep0227_bench_") as tmp:
        where = args.dir or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        url, path = f"sqlite:///{where / 'xmppd.sqlite3'}", str(where / "export.xml")
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        for name, phase_args in (
            ("fill", (url, args.messages)), ("export", (url, path)), ("read", (path,)),
        ):  # fmt: skip
            proc = ctx.Process(target=_phase, args=(name, phase_args, queue))
            proc.start()
            proc.join(timeout=1800)
            if proc.exitcode != 0:
                proc.kill()
                raise SystemExit(f"phase {name} failed (exit {proc.exitcode})")
            name, seconds, rss, what = queue.get(timeout=5)
            print(f"{name:7} {seconds:7.1f} s  peak RSS {rss:6.0f} MiB  {what}", flush=True)


if __name__ == "__main__":
    main()
