"""``xmppd`` command line: serve, check-config, db upgrade, accounts, nicks, and the
commands that operate a running server through its admin socket (:mod:`xmppd.admin`).

Commands that change what a running server holds (accounts, nicks) go through the admin
socket when the server runs, so they take effect before they return; when it does not
run they change the database directly, after a note on stderr. Exit status: 0 done,
1 could not be done (no such user/room/session, refused, not running), 2 bad input
(usage, a JID or room that does not parse, a socket that is not xmppd's…).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from xmppd import cli_import
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


def _fail(status: int, message: str) -> NoReturn:
    print(f"xmppd: {message}", file=sys.stderr)
    raise SystemExit(status)


def _close_admin(admin: Any) -> None:
    """Give up the admin socket bound before a start-up that failed."""
    from xmppd.admin.listener import unlink_if_ours

    if admin is not None:
        admin.sock.close()
        unlink_if_ours(admin.path, admin.inode)


def cmd_serve(args: argparse.Namespace) -> int:
    import trio

    from xmppd.admin import AdminSocketError, open_admin
    from xmppd.memory import limit_arenas
    from xmppd.server import build_server, run_server

    config = _load(args)
    setup_logging(config.server.log_level)
    try:
        # First of all: a second server on the same socket stops before opening a port.
        admin = open_admin(config)
    except AdminSocketError as exc:
        _fail(2, str(exc))
    limit_arenas()
    try:
        server = build_server(config)
    except ConfigError as exc:  # the TLS pair does not load: named like any bad key
        _close_admin(admin)
        print(f"xmppd: configuration error: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        _close_admin(admin)
        raise
    server.config_path = _find_config(args.config)  # what SIGHUP and `reload` re-read
    server.admin = admin
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
    from xmppd.admin.commands import user_localpart
    from xmppd.storage import StorageError, UnknownUser, UserExists

    config = _load(args)
    if config.auth.backend != "internal" and args.action != "list":
        print("xmppd: accounts come from the forum (auth.backend = phpbb)", file=sys.stderr)
        return 2
    if args.action != "list":
        _valid(user_localpart, args.localpart)
    password = _read_password(args) if args.action in ("add", "passwd") else ""
    if args.action != "list":
        request = {"user": args.localpart}
        if password:
            request["password"] = password
        doc = _ask_server(config, f"user-{args.action}", request, fallback=True)
        if doc is not None:
            return _answer(doc, _print_ended)
    db = _database(config)
    db.upgrade()
    try:
        if args.action == "list":
            for name in db.list_users():
                print(f"{name}@{config.server.domain}")
        elif args.action == "add":
            db.create_user(args.localpart, password)
            print(f"created {args.localpart}@{config.server.domain}")
        elif args.action == "passwd":
            db.set_password(args.localpart, password)
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


def _print_ended(doc: dict[str, Any]) -> None:
    """The message, then which sessions a password change or deletion ended."""
    print(doc["message"])
    ended = doc.get("result", {}).get("ended") or []
    if ended:
        print(f"ended {len(ended)} session(s): {', '.join(ended)}")


def _muc_host(config: Config) -> str:
    return config.muc.service_host(config.server.domain)


def cmd_register_nick(args: argparse.Namespace) -> int:
    """The seed's patched ``ejabberdctl muc_register_nick``, natively."""
    from xmppd.admin.commands import nick_scope, parse_jid
    from xmppd.storage.muc import MucStore

    config = _load(args)
    jid = _valid(parse_jid, args.jid)
    if jid.local is None:
        _fail(2, f"{args.jid} is not a user's JID")
    room = _valid(nick_scope, args.room, _muc_host(config))
    request = {"nick": args.nick, "jid": args.jid, "room": room}
    doc = _ask_server(config, "register-nick", request, fallback=True)
    if doc is not None:
        return _answer(doc)
    db = _database(config)
    db.upgrade()
    try:
        MucStore(db).register_nick(args.nick, args.jid, room=room)
    except ValueError as exc:
        print(f"xmppd: {exc}", file=sys.stderr)
        return 1
    where = f"room {room}" if room else "every room"
    print(f"nick {args.nick!r} reserved for {jid.bare} in {where}")
    return 0


def cmd_unregister_nick(args: argparse.Namespace) -> int:
    from xmppd.admin.commands import nick_scope
    from xmppd.storage.muc import MucStore

    config = _load(args)
    room = _valid(nick_scope, args.room, _muc_host(config))
    doc = _ask_server(config, "unregister-nick", {"nick": args.nick, "room": room}, fallback=True)
    if doc is not None:
        return _answer(doc)
    db = _database(config)
    db.upgrade()
    try:
        existed = MucStore(db).unregister_nick(args.nick, room=room)
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
    doc = _ask_server(config, "sync-nicks", {"prune": args.prune}, fallback=True)
    if doc is not None:
        return _answer(doc)
    if args.prune:
        config.muc.sync_nicks_prune = True
    db = _database(config)
    db.upgrade()
    count, summary = sync_once(config, db)
    print(f"{count} forum members: {summary}")
    return 0


# ---------------------------------------------------------------- the running server
def _valid(check: Any, *values: Any) -> Any:
    """``check(*values)``, or exit 2 with its one-line complaint (bad input)."""
    from xmppd.admin.protocol import AdminError

    try:
        return check(*values)
    except AdminError as err:
        _fail(2, err.message)


def _ask_server(
    config: Config, command: str, request: dict[str, Any], *, fallback: bool
) -> dict[str, Any] | None:
    """The running server's answer to ``command``; None when it does not run and the
    caller may change the database instead (a note says so on stderr)."""
    from xmppd.admin.client import AdminClientError, NotRunning, NotXmppd, call

    if not config.admin.enabled:
        if fallback:
            _note("the admin socket is off (admin.enabled = false)")
            return None
        _fail(1, "this command needs the admin socket (admin.enabled = false)")
    try:
        return call(config.admin_socket_path, command, request)
    except NotRunning as exc:
        if fallback:
            _note(f"xmppd is not running ({exc})")
            return None
        _fail(1, f"xmppd is not running ({exc})")
    except NotXmppd as exc:
        _fail(2, str(exc))
    except AdminClientError as exc:
        _fail(1, str(exc))


def _note(why: str) -> None:
    print(f"xmppd: note: {why}; changing the database directly", file=sys.stderr)


def _answer(doc: dict[str, Any], show: Any = None) -> int:
    """Print the server's answer; the exit status its error code maps to."""
    from xmppd.admin.protocol import EXIT_STATUS

    if not doc["ok"]:
        print(f"xmppd: {doc.get('message') or doc['error']}", file=sys.stderr)
        return EXIT_STATUS.get(doc["error"], 1)
    if show is None:
        print(doc["message"])
    else:
        show(doc)
    return 0


def _live(config: Config, command: str, request: dict[str, Any], show: Any = None) -> int:
    """A command only the running server can carry out (no database fallback)."""
    doc = _ask_server(config, command, request, fallback=False)
    assert doc is not None  # without fallback, _ask_server exits instead
    return _answer(doc, show)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _listing(key: str, headers: Sequence[str], cells: Any, as_json: bool) -> Any:
    def show(doc: dict[str, Any]) -> None:
        items = doc["result"][key]
        if as_json:
            print(json.dumps(items, indent=2, ensure_ascii=False))
        elif not items:
            print(doc["message"])
        else:
            _table(headers, [cells(item) for item in items])

    return show


def cmd_sessions(args: argparse.Namespace) -> int:
    def cells(s: dict[str, Any]) -> list[str]:
        state = "" if s["state"] == "connected" else s["state"]
        return [s["jid"], s["transport"], s["ip"], s["since"], state]

    headers = ("JID", "TRANSPORT", "IP", "SINCE", "")
    return _live(_load(args), "sessions", {}, _listing("sessions", headers, cells, args.json))


def cmd_kick(args: argparse.Namespace) -> int:
    from xmppd.admin.commands import parse_jid

    if (args.jid is None) == (args.user is None):
        _fail(2, "kick: give a JID or --user NAME")
    if args.jid is not None:
        _valid(parse_jid, args.jid)
        request = {"jid": args.jid}
    else:
        request = {"user": args.user}
    return _live(_load(args), "kick", {**request, "reason": args.reason})


def _room_arg(config: Config, args: argparse.Namespace) -> str:
    """The ROOM argument, checked (exit 2 if it does not parse); sent as given."""
    from xmppd.admin.commands import room_localpart

    _valid(room_localpart, args.room, _muc_host(config))
    return str(args.room)


def cmd_rooms(args: argparse.Namespace) -> int:
    def cells(r: dict[str, Any]) -> list[str]:
        flags = [name for name in ("persistent", "public") if r[name]]
        if r["members_only"]:
            flags.append("members-only")
        return [
            r["jid"],
            str(r["occupants"]),
            ",".join(flags),
            r["subject"].replace("\n", " ")[:60],
        ]

    headers = ("ROOM", "OCCUPANTS", "FLAGS", "SUBJECT")
    return _live(_load(args), "rooms", {}, _listing("rooms", headers, cells, args.json))


def cmd_occupants(args: argparse.Namespace) -> int:
    def cells(o: dict[str, Any]) -> list[str]:
        return [o["nick"], o["jid"], o["role"], o["affiliation"]]

    headers = ("NICK", "JID", "ROLE", "AFFILIATION")
    show = _listing("occupants", headers, cells, args.json)
    config = _load(args)
    return _live(config, "occupants", {"room": _room_arg(config, args)}, show)


def cmd_say(args: argparse.Namespace) -> int:
    config = _load(args)
    return _live(config, "say", {"room": _room_arg(config, args), "text": args.text})


def cmd_subject(args: argparse.Namespace) -> int:
    config = _load(args)
    return _live(config, "subject", {"room": _room_arg(config, args), "text": args.text})


def cmd_room_ban(args: argparse.Namespace) -> int:
    from xmppd.admin.commands import parse_jid

    config = _load(args)
    _valid(parse_jid, args.jid)
    request = {"room": _room_arg(config, args), "jid": args.jid, "reason": args.reason}
    return _live(config, "room-ban", request)


def cmd_room_unban(args: argparse.Namespace) -> int:
    from xmppd.admin.commands import parse_jid

    config = _load(args)
    _valid(parse_jid, args.jid)
    return _live(config, "room-unban", {"room": _room_arg(config, args), "jid": args.jid})


def cmd_destroy_room(args: argparse.Namespace) -> int:
    config = _load(args)
    request = {"room": _room_arg(config, args), "reason": args.reason}
    return _live(config, "destroy-room", request)


def cmd_stats(args: argparse.Namespace) -> int:
    def show(doc: dict[str, Any]) -> None:
        stats = doc["result"]
        if args.json:
            print(json.dumps(stats, indent=2, ensure_ascii=False))
            return
        for key, value in stats.items():
            if isinstance(value, dict):
                value = " ".join(f"{k}={v}" for k, v in value.items()) or "-"
            elif isinstance(value, list):
                value = ", ".join(map(str, value)) or "-"
            print(f"{key}: {value}")

    return _live(_load(args), "stats", {}, show)


def cmd_reload(args: argparse.Namespace) -> int:
    return _live(_load(args), "reload", {})


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (and exit status 2), not the usage block."""

    def error(self, message: str) -> NoReturn:
        unknown = re.match(r"argument COMMAND: invalid choice: ('[^']*')", message)
        if unknown:
            message = f"unknown command {unknown.group(1)}"
        where = self.prog.partition(" ")[2]
        _fail(2, f"{where + ': ' if where else ''}{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="xmppd",
        description="XMPP server for a web community. Commands marked (live) need the "
        "running server (its admin socket); user and nick commands use it when it runs "
        "and change the database otherwise.",
        epilog="Exit status: 0 done, 1 could not be done, 2 bad input.",
    )
    parser.add_argument("-c", "--config", help="TOML configuration file (default: ./xmppd.toml)")
    # ``--config`` is accepted after the subcommand too (``xmppd serve --config f``).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    def command(subparsers: Any, name: str, func: Any = None, **kwargs: Any) -> Any:
        p = subparsers.add_parser(name, parents=[common], **kwargs)
        if func is not None:
            p.set_defaults(func=func)
        return p

    def with_json(p: Any) -> Any:
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        return p

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command(sub, "serve", cmd_serve, help="run the server")
    command(sub, "check-config", cmd_check_config, help="validate the configuration")
    db_sub = command(sub, "db", help="database maintenance").add_subparsers(
        dest="db_command", required=True
    )
    command(db_sub, "upgrade", cmd_db_upgrade, help="apply migrations")

    user = command(sub, "user", cmd_user, help="manage internal accounts: add|passwd|del|list")
    user_sub = user.add_subparsers(dest="action", required=True)
    change_help = "change a password (ends the user's sessions: reset)"
    for action, text in (("add", "create an account"), ("passwd", change_help)):
        p = command(user_sub, action, help=text)
        p.add_argument("localpart")
        p.add_argument(
            "--password-stdin", action="store_true", help="read the password from standard input"
        )
    command(user_sub, "del", help="delete an account (ends its sessions)").add_argument("localpart")
    command(user_sub, "list", help="list the accounts")

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

    with_json(command(sub, "sessions", cmd_sessions, help="(live) list sessions: JID, "
                      "transport, IP, since"))  # fmt: skip
    kick = command(sub, "kick", cmd_kick, help="(live) end a user's sessions (a full JID: one)")
    kick.add_argument("jid", nargs="?", help="user@domain or user@domain/resource")
    kick.add_argument("--user", help="an account or forum user name instead of a JID")
    kick.add_argument("--reason", default="", help="shown to the user")
    with_json(command(sub, "rooms", cmd_rooms, help="(live) list the rooms"))
    occ = with_json(command(sub, "occupants", cmd_occupants, help="(live) list a room's occupants"))
    occ.add_argument("room", help="room name or room@service JID")
    say = command(sub, "say", cmd_say, help="(live) send a message from the room itself")
    say.add_argument("room")
    say.add_argument("text")
    subject = command(sub, "subject", cmd_subject, help="(live) set a room's subject")
    subject.add_argument("room")
    subject.add_argument("text", help='the new subject ("" clears it)')
    ban = command(sub, "room-ban", cmd_room_ban, help="(live) ban a JID from a room")
    ban.add_argument("room")
    ban.add_argument("jid")
    ban.add_argument("--reason", default="", help="shown to the room")
    unban = command(sub, "room-unban", cmd_room_unban, help="(live) lift a room ban")
    unban.add_argument("room")
    unban.add_argument("jid")
    destroy = command(sub, "destroy-room", cmd_destroy_room, help="(live) destroy a room")
    destroy.add_argument("room")
    destroy.add_argument("--reason", default="", help="shown to the occupants")
    with_json(command(sub, "stats", cmd_stats, help="(live) counters of the running server"))
    command(sub, "reload", cmd_reload, help="(live) re-read and check the configuration")
    cli_import.add_parser(sub, common, _load)
    from xmppd.cli_export import add_export_command

    add_export_command(command(sub, "export", help="write the data to an XEP-0227 file"), _load)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)
