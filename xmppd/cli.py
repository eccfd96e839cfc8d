"""``xmppd`` command line: serve, check-config, db upgrade, user add|passwd|del|list."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xmppd.config import Config, ConfigError, load_config
from xmppd.private_files import private_dir

DEFAULT_CONFIG_NAMES = ("xmppd.toml", "/etc/xmppd/xmppd.toml")


def _find_config(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    env = os.environ.get("XMPPD_CONFIG")
    if env:
        return env
    for name in DEFAULT_CONFIG_NAMES:
        if Path(name).is_file():
            return name
    return None


class _KeyValueFormatter(logging.Formatter):
    """One line per event: ``time level logger message`` where message is key=value pairs."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # SQLAlchemy echoes parameters (passwords, session ids) at INFO/DEBUG: never let it.
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)


def _load(args: argparse.Namespace) -> Config:
    path = _find_config(args.config)
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"xmppd: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    import trio

    from xmppd.memory import limit_arenas
    from xmppd.server import build_server, run_server

    config = _load(args)
    setup_logging(config.server.log_level)
    limit_arenas()
    try:
        server = build_server(config)
    except ConfigError as exc:  # the TLS pair does not load: named like any bad key
        print(f"xmppd: configuration error: {exc}", file=sys.stderr)
        return 2
    server.config_path = _find_config(args.config)  # what SIGHUP re-reads
    trio.run(run_server, server)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args)
    if config.tls.cert:  # a certificate and key that do not load fail here, not at start
        from xmppd.transport.tls import load_pair

        try:
            load_pair(Path(config.tls.cert), Path(config.tls.key))
        except ConfigError as exc:
            print(f"xmppd: configuration error: {exc}", file=sys.stderr)
            return 2
    print(f"configuration OK: domain={config.server.domain} auth={config.auth.backend}")
    return 0


def _database(config: Config):  # type: ignore[no-untyped-def]
    from xmppd.storage import Database

    private_dir(config.data_path)
    return Database(config.database_url)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    config = _load(args)
    db = _database(config)
    db.upgrade()
    print("database is up to date")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise SystemExit("xmppd: passwords do not match")
    if not password:
        raise SystemExit("xmppd: empty password")
    return password


def cmd_user(args: argparse.Namespace) -> int:
    from xmppd.storage import StorageError, UnknownUser, UserExists

    config = _load(args)
    if config.auth.backend != "internal" and args.action != "list":
        print("xmppd: accounts come from the forum (auth.backend = phpbb)", file=sys.stderr)
        return 2
    db = _database(config)
    db.upgrade()
    try:
        if args.action == "list":
            for name in db.list_users():
                print(f"{name}@{config.server.domain}")
        elif args.action == "add":
            db.create_user(args.localpart, _read_password(args))
            print(f"created {args.localpart}@{config.server.domain}")
        elif args.action == "passwd":
            db.set_password(args.localpart, _read_password(args))
            print(f"password changed for {args.localpart}@{config.server.domain}")
        elif args.action == "del":
            if not db.delete_user(args.localpart):
                print(f"xmppd: no such user {args.localpart}", file=sys.stderr)
                return 1
            print(f"deleted {args.localpart}@{config.server.domain}")
    except UserExists:
        print(f"xmppd: user {args.localpart} already exists", file=sys.stderr)
        return 1
    except UnknownUser:
        print(f"xmppd: no such user {args.localpart}", file=sys.stderr)
        return 1
    except StorageError as exc:
        print(f"xmppd: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_register_nick(args: argparse.Namespace) -> int:
    """The seed's patched ``ejabberdctl muc_register_nick``, natively."""
    from xmppd.muc.storage import register_nick

    config = _load(args)
    db = _database(config)
    db.upgrade()
    try:
        register_nick(db, args.nick, args.jid, room=args.room)
    except ValueError as exc:
        print(f"xmppd: {exc}", file=sys.stderr)
        return 1
    where = f"room {args.room}" if args.room else "every room"
    print(f"nick {args.nick!r} reserved for {args.jid} in {where}")
    return 0


def cmd_unregister_nick(args: argparse.Namespace) -> int:
    from xmppd.muc.storage import unregister_nick

    config = _load(args)
    db = _database(config)
    db.upgrade()
    try:
        existed = unregister_nick(db, args.nick, room=args.room)
    except ValueError as exc:
        print(f"xmppd: {exc}", file=sys.stderr)
        return 1
    if not existed:
        print(f"xmppd: nick {args.nick!r} was not registered", file=sys.stderr)
        return 1
    print(f"nick {args.nick!r} released")
    return 0


def cmd_sync_nicks(args: argparse.Namespace) -> int:
    """Reserve every forum username as a nick for its owner (phpbb backend), idempotently."""
    from xmppd.muc.forum_sync import sync_once

    config = _load(args)
    if config.auth.backend != "phpbb":
        print("xmppd: sync-nicks reads the forum: set auth.backend = 'phpbb'", file=sys.stderr)
        return 2
    if args.prune:
        config.muc.sync_nicks_prune = True
    db = _database(config)
    db.upgrade()
    count, summary = sync_once(config, db)
    print(f"{count} forum members: {summary}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmppd", description="XMPP server for a web community")
    parser.add_argument("-c", "--config", help="TOML configuration file (default: ./xmppd.toml)")
    # ``--config`` is accepted after the subcommand too (``xmppd serve --config f``).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    def command(subparsers: Any, name: str, func: Any = None, **kwargs: Any) -> Any:
        p = subparsers.add_parser(name, parents=[common], **kwargs)
        if func is not None:
            p.set_defaults(func=func)
        return p

    sub = parser.add_subparsers(dest="command", required=True)
    command(sub, "serve", cmd_serve, help="run the server")
    command(sub, "check-config", cmd_check_config, help="validate the configuration")
    db_sub = command(sub, "db", help="database maintenance").add_subparsers(
        dest="db_command", required=True
    )
    command(db_sub, "upgrade", cmd_db_upgrade, help="apply migrations")

    user = command(sub, "user", cmd_user, help="manage internal accounts")
    user_sub = user.add_subparsers(dest="action", required=True)
    for action in ("add", "passwd"):
        p = command(user_sub, action)
        p.add_argument("localpart")
        p.add_argument(
            "--password-stdin", action="store_true", help="read the password from standard input"
        )
    command(user_sub, "del").add_argument("localpart")
    command(user_sub, "list")

    reg = command(sub, "register-nick", cmd_register_nick, help="reserve a MUC nick for a JID")
    reg.add_argument("nick")
    reg.add_argument("jid")
    reg.add_argument("--room", default="", help="only in this room (default: every room)")
    unreg = command(sub, "unregister-nick", cmd_unregister_nick, help="release a MUC nick")
    unreg.add_argument("nick")
    unreg.add_argument("--room", default="", help="the room it was reserved in (default: all)")
    sync = command(sub, "sync-nicks", cmd_sync_nicks, help="reserve every forum username")
    sync.add_argument(
        "--prune", action="store_true", help="also release nicks of members gone from the forum"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)
