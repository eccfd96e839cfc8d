"""``xmppd import ejabberd SOURCE``: move an ejabberd site's data into xmppd's database.

The import writes the database directly, so it refuses to run while the server answers
on its admin socket: a running server keeps rooms, nicks and credentials in memory and
would neither see the new rows nor keep from overwriting them. (A server on the same
database with ``admin.enabled = false`` cannot be seen: the README says to stop it.)
A dry run only reads, so it may run beside the server.

Output: the counts per kind and every problem on stdout; a progress bar for the archives
on stderr when it is a terminal. Exit status as :mod:`xmppd.cli` says: 0 done (problems
are listed but not fatal), 1 could not be done (the server runs, the database failed),
2 bad input (a source that cannot be read, a bad ``--map-domain``, problems under
``--strict``): nothing changed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xmppd.config import Config

if TYPE_CHECKING:
    from xmppd.migrate.importer import Report

__all__ = ["add_parser", "cmd_import"]


def add_parser(sub: Any, common: argparse.ArgumentParser, load: Callable[..., Config]) -> None:
    """``import ejabberd …`` under the CLI's subcommands; ``load(args)`` is the CLI's own
    configuration loader (it exits 2 on a bad file)."""
    p = sub.add_parser("import", parents=[common], help="import another server's data")
    which = p.add_subparsers(dest="server", required=True, metavar="SERVER")
    e = which.add_parser("ejabberd", parents=[common], help="an ejabberd 23.01 site")
    e.set_defaults(func=cmd_import, load_config=load)
    e.add_argument("source", help="a SQL URL (mysql://… postgresql://…), a Mnesia dump "
                   "(ejabberdctl dump) or an XEP-0227 file (export_piefxis)")  # fmt: skip
    e.add_argument("--from", dest="form", choices=("sql", "dump", "xep0227"),
                   help="what SOURCE is (default: detected)")  # fmt: skip
    e.add_argument("--dry-run", action="store_true", help="read and check, write nothing")
    e.add_argument("--replace", action="store_true", help="overwrite rows already imported")
    e.add_argument("--strict", action="store_true", help="any problem is fatal (nothing written)")
    e.add_argument("--map-domain", action="append", default=[], metavar="OLD=NEW",
                   help="rename a domain and its subdomains (repeatable)")  # fmt: skip
    e.add_argument("--host", help="the virtual host of a single-host ejabberd SQL schema "
                   "(default: the served domain, before --map-domain)")  # fmt: skip


def _fail(status: int, message: str) -> int:
    print(f"xmppd: {message}", file=sys.stderr)
    return status


def _server_answers(config: Config) -> bool:
    """Whether a server answers on this configuration's admin socket."""
    from xmppd.admin.client import AdminClientError, NotRunning, call

    if not config.admin.enabled:
        return False
    try:
        call(config.admin_socket_path, "stats", {})
    except NotRunning:
        return False
    except AdminClientError:
        return True  # something holds the socket: do not write under it
    return True


def _print_report(report: Report, description: str, dry_run: bool) -> None:
    from xmppd.migrate.model import Kind

    print(f"{'dry run: ' if dry_run else ''}{description}")
    for kind in Kind:
        c = report.written.get(kind)
        read = report.read.get(kind, 0)
        if c is None:
            continue
        verb = "would offer" if dry_run else "added"
        print(f"  {kind.value:22} read {read:>9}  {verb} {c.added:>9}  replaced {c.replaced:>7}"
              f"  skipped {c.skipped:>7}  left out {c.left_out:>7}")  # fmt: skip
    if report.archive_only:
        names = sorted(report.archive_only)
        shown = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
        print(f"  archives of {len(names)} room(s) that do not exist, kept as a destroyed "
              f"room's ({sum(report.archive_only.values())} messages): {shown}")  # fmt: skip
    print(f"problems: {len(report.problems)}")
    for p in report.problems:
        print(f"  [{p.kind.value if p.kind else '-'}] {p.where}: {p.text}")


def cmd_import(args: argparse.Namespace) -> int:
    from xmppd.migrate.detect import DetectError, open_source
    from xmppd.migrate.domains import DomainMap, parse_mapping
    from xmppd.migrate.importer import Importer, Options
    from xmppd.private_files import private_dir
    from xmppd.storage import Database

    config = args.load_config(args)
    try:
        pairs = [parse_mapping(text) for text in args.map_domain]
    except ValueError as exc:
        return _fail(2, str(exc))
    domains = DomainMap(pairs)
    # the served domain as the old server called it: what --map-domain renames into it
    old_domain = next((old for old, new in pairs if new == config.server.domain), None)
    if not args.dry_run and _server_answers(config):
        return _fail(1, "xmppd is running on this configuration: stop it before importing "
                     "(or use --dry-run)")  # fmt: skip
    try:
        host = args.host or old_domain or config.server.domain
        source = open_source(args.source, args.form, host=host)
    except DetectError as exc:
        return _fail(2, str(exc))
    muc_host = config.muc.service_host(config.server.domain) if config.muc.enabled else None
    progress = sys.stderr if sys.stderr.isatty() else None
    options = Options(args.dry_run, args.replace, args.strict, domains, progress=progress)
    private_dir(config.data_path)
    db = Database(config.database_url)
    try:
        db.upgrade()
        report = Importer(db, config.server.domain, muc_host, options).run(source)
    except Exception as exc:  # a database that failed mid-way: that kind was rolled back
        return _fail(
            1, f"import failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
        )
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
        db.dispose()
    strict_stop = args.strict and report.problems
    _print_report(report, source.description, args.dry_run or bool(strict_stop))
    if strict_stop:
        return _fail(2, f"{len(report.problems)} problem(s) under --strict: nothing was written")
    return 0
