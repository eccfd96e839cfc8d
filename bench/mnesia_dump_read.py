"""How fast and in how much memory ``MnesiaDumpSource`` reads a large MUC archive.

Writes a dump (once; kept for reruns) of N ``archive_msg`` records copied from a real
ejabberd 23.01 dump (tests/data/ejabberd-2301-mnesia-plain.dump.gz) with distinct ids,
then times ``estimate`` and ``read(ROOM_ARCHIVE)`` and a pass that skips every record
(``read(ACCOUNTS)``), and prints CPU seconds (wall time on a shared machine says more about
the neighbours), records per CPU second and the peak RSS.

    .venv/bin/python bench/mnesia_dump_read.py                  # 100,000 records (78 MB)
    .venv/bin/python bench/mnesia_dump_read.py --records 1000000 --path /tmp/big.dump
"""

from __future__ import annotations

import argparse
import gzip
import re
import resource
import time
from pathlib import Path

from xmppd.migrate.mnesia_dump import MnesiaDumpSource
from xmppd.migrate.model import Kind

SAMPLE = Path(__file__).parent.parent / "tests/data/ejabberd-2301-mnesia-plain.dump.gz"


def write_dump(path: Path, records: int) -> None:
    real = gzip.decompress(SAMPLE.read_bytes()).decode("latin-1")
    found = re.search(r'^\{archive_msg,\{<<"lobby".*?groupchat\}\.\n', real, re.S | re.M)
    assert found is not None, "no room archive record in the sample"
    record = found.group()
    with path.open("w", encoding="latin-1") as f:
        f.write(real.split("\n", 1)[0] + "\n")  # the {tables, ...} header's first line
        for i in range(records):
            f.write(record.replace('<<"17965733', f'<<"{i:08d}', 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--path", type=Path, default=Path("/tmp/xmppd-bench-mnesia.dump"))
    args = parser.parse_args()
    if not args.path.exists():
        write_dump(args.path, args.records)
    source = MnesiaDumpSource(args.path)
    t0 = time.process_time()
    estimate = source.estimate(Kind.ROOM_ARCHIVE)
    t1 = time.process_time()
    count = sum(1 for _ in source.read(Kind.ROOM_ARCHIVE))
    t2 = time.process_time()
    skipped = sum(1 for _ in source.read(Kind.ACCOUNTS))
    t3 = time.process_time()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"file {args.path.stat().st_size / 1e6:.0f} MB, {count} room messages "
        f"(estimate {estimate}), {skipped} accounts\n"
        f"estimate {t1 - t0:.1f} s CPU; read {t2 - t1:.1f} s CPU = {count / (t2 - t1):.0f} "
        f"records/s; skip-all pass {t3 - t2:.1f} s CPU; peak RSS {rss:.0f} MiB"
    )


if __name__ == "__main__":
    main()
