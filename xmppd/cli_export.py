"""``xmppd export --xep0227 FILE``: the site's accounts, rosters, vCards, private storage,
offline messages, rooms, nicks and archives as one XEP-0227 file (docs/xep0227.md), so
a site is never locked in; ``xmppd import ejabberd FILE --from xep0227`` reads it back.

The file holds credentials (SCRAM keys) and private messages: it is written to a
temporary file of mode 0600 beside FILE, synced, then renamed over FILE, so FILE is
either the old one or the whole new export, and never readable by others. The database
is only read; a running server may go on writing (each kind is read in one query, the
kinds one after the other: stop the server for an exact snapshot). Exit status: 0 done,
1 written but rows were left out (listed on stderr) or the database could not be read,
2 bad input (FILE's directory does not exist, FILE is a directory).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xmppd.config import Config
from xmppd.migrate.model import Kind


def add_export_command(parser: argparse.ArgumentParser, load: Callable[[Any], Config]) -> None:
    """Fill in the ``export`` subcommand; ``load`` reads the configuration (cli.py's)."""
    parser.add_argument(
        "--xep0227", metavar="FILE", required=True, help="the XEP-0227 file to write (mode 0600)"
    )
    parser.set_defaults(func=lambda args: cmd_export(args, load))


def _fail(status: int, message: str) -> int:
    print(f"xmppd: export: {message}", file=sys.stderr)
    return status


def cmd_export(args: argparse.Namespace, load: Callable[[Any], Config]) -> int:
    import sqlalchemy as sa

    from xmppd.migrate.xep0227_writer import WriteError, write_xep0227
    from xmppd.migrate.xmppd_source import XmppdSource
    from xmppd.storage import Database

    config = load(args)
    target = Path(args.xep0227)
    if target.is_dir():
        return _fail(2, f"{target} is a directory")
    if not target.parent.is_dir():
        return _fail(2, f"no such directory: {target.parent}")
    db = Database(config.database_url)
    source = XmppdSource(db, config.server.domain, config.muc.service_host(config.server.domain))
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            result = write_xep0227(source, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except (sa.exc.SQLAlchemyError, WriteError, OSError) as exc:
        os.unlink(temp)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _fail(1, f"nothing written: {reason}")
    except BaseException:
        os.unlink(temp)
        raise
    finally:
        db.dispose()
    counts = ", ".join(f"{result.counts[k]} {k.value}" for k in Kind if result.counts[k])
    print(f"exported to {target}: {counts or 'nothing'}")
    for problem in result.problems:
        print(f"xmppd: export: {problem.where}: {problem.text}", file=sys.stderr)
    if result.problems:
        return _fail(1, f"{len(result.problems)} row(s) left out (listed above)")
    return 0
