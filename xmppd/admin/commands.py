"""What each admin command does to the running server, before it answers.

Every handler takes the :class:`~xmppd.server.Server` and the request's ``args`` and
returns a :class:`~xmppd.admin.protocol.Reply`, or raises
:class:`~xmppd.admin.protocol.AdminError`. They run on the server's trio loop, like the
stanza path, so they see and change the same state without locks; database work runs in
worker threads. A command that changes state has taken effect when it answers: sessions
are ended (with their unavailable presence sent), the nick registry reloaded, room
changes delivered and written.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import trio

from xmppd import memory
from xmppd.admin.protocol import AdminError, Reply, Request, bool_arg, text_arg, xml_text
from xmppd.config import ConfigError
from xmppd.jid import JID, JIDError, localpart_for_username, nodeprep
from xmppd.muc.forum_sync import sync_once
from xmppd.session import Session
from xmppd.storage import StorageError, UnknownUser, UserExists
from xmppd.storage.muc import MucStore
from xmppd.transport.sm import Detached
from xmppd.xml.errors import StanzaError

if TYPE_CHECKING:
    from xmppd.muc.room import Room
    from xmppd.muc.service import MucService
    from xmppd.server import Server

log = logging.getLogger("xmppd.admin")

Handler = Callable[["Server", dict[str, Any]], Awaitable[Reply]]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        COMMANDS[name] = func
        return func

    return register


def make_dispatch(server: Server) -> Callable[[Request], Awaitable[Reply]]:
    """The listener's dispatch function for ``server``."""

    async def dispatch(request: Request) -> Reply:
        handler = COMMANDS.get(request.command)
        if handler is None:
            raise AdminError("unknown-command", f"unknown command {request.command!r}")
        return await handler(server, request.args)

    return dispatch


# ------------------------------------------------------------------------ arguments
def parse_jid(raw: str, what: str = "JID") -> JID:
    try:
        return JID.parse(raw)
    except JIDError as exc:
        raise AdminError("bad-request", f"{raw!r} is not a valid {what}: {exc}") from None


def user_localpart(raw: str) -> str:
    """An account name as its JID localpart (normalised)."""
    try:
        local = nodeprep(raw)
    except JIDError as exc:
        raise AdminError("bad-request", f"{raw!r} is not a valid user name: {exc}") from None
    if not local:
        raise AdminError("bad-request", "empty user name")
    return local


def room_localpart(raw: str, service: str) -> str:
    """``sax``, ``SAX`` or ``sax@conference.example.org`` -> ``sax`` (the room's localpart)."""
    if "@" in raw or "/" in raw:
        jid = parse_jid(raw, "room")
        if jid.local is None or jid.resource is not None or jid.domain != service:
            raise AdminError("bad-request", f"{raw!r} is not a room of {service}")
        return jid.local
    try:
        local = JID.make(raw, service).local
    except JIDError as exc:
        raise AdminError("bad-request", f"{raw!r} is not a valid room name: {exc}") from None
    return local or ""


def _muc(server: Server) -> MucService:
    if server.muc is None:
        raise AdminError("not-allowed", "multi-user chat is disabled (muc.enabled = false)")
    return server.muc


def _room(server: Server, args: dict[str, Any]) -> Room:
    muc = _muc(server)
    name = room_localpart(text_arg(args, "room", limit=1024), muc.domain)
    room = muc.rooms.get(name)
    if room is None:
        raise AdminError("not-found", f"no room {name}@{muc.domain}")
    return room


def _target(server: Server, args: dict[str, Any]) -> JID:
    """``jid`` (bare: every resource; full: one), or ``user``: an account or forum name."""
    if args.get("user") not in (None, ""):
        name = text_arg(args, "user", limit=1024)
        try:
            local = localpart_for_username(name)
        except JIDError as exc:
            raise AdminError("bad-request", f"{name!r} is not a valid user name: {exc}") from None
        return JID(local, server.config.server.domain, None)
    jid = parse_jid(text_arg(args, "jid", limit=3071))
    if jid.local is None:
        raise AdminError("bad-request", f"{jid} is not a user's JID")
    return jid


def _reason(args: dict[str, Any]) -> str:
    return xml_text(text_arg(args, "reason", required=False, limit=1024), "reason")


def _internal_accounts(server: Server) -> None:
    if server.config.auth.backend != "internal":
        raise AdminError("not-allowed", "accounts come from the forum (auth.backend = phpbb)")


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ------------------------------------------------------------------------ sessions
class _Ended:
    """The outbox of a session the admin ended: nothing more goes out through it."""

    def enqueue(self, data: bytes) -> bool:
        return False

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        pass


def sessions_of(server: Server, jid: JID) -> list[Session]:
    bare = server.router.resources_of(str(jid.bare))
    if jid.resource is None:
        return bare
    return [s for s in bare if s.jid == jid]


async def end_session(server: Server, session: Session, condition: str, text: str) -> None:
    """End ``session`` now with a stream error; it cannot be resumed (XEP-0198).

    The connection gets the error and closes; the session is then taken from it (its
    transport's teardown sees another outbox and leaves it alone) and ended here, so
    unavailable presence has reached contacts and rooms when this returns.
    """
    session.revoked = condition  # as a forum ban does: never kept for resumption nor resumed
    outbox = session.outbox
    if not isinstance(outbox, Detached):
        outbox.close(condition, text)
    session.outbox = _Ended()
    await server.sm.end_session(session)
    log.info("event=session_ended_by_admin jid=%s condition=%s", session.full_str, condition)


async def _end_all(server: Server, jid: JID, condition: str, text: str) -> list[str]:
    ended = []
    for session in sessions_of(server, jid):
        await end_session(server, session, condition, text)
        ended.append(session.full_str)
    return ended


def _session_row(session: Session) -> dict[str, Any]:
    return {
        "jid": session.full_str,
        "transport": session.transport,
        "ip": session.ip,
        "since": _iso(session.since),
        "state": "detached" if isinstance(session.outbox, Detached) else "connected",
    }


@command("sessions")
async def cmd_sessions(server: Server, args: dict[str, Any]) -> Reply:
    rows = [
        _session_row(s) for resources in server.router.sessions.values() for s in resources.values()
    ]
    rows.sort(key=lambda r: (r["jid"], r["since"]))
    return Reply(f"{len(rows)} sessions", {"sessions": rows})


@command("kick")
async def cmd_kick(server: Server, args: dict[str, Any]) -> Reply:
    target = _target(server, args)
    reason = _reason(args) or "kicked by an administrator"
    ended = await _end_all(server, target, "policy-violation", reason)
    if not ended:
        raise AdminError("not-found", f"{target} has no session")
    return Reply(f"kicked {target}: {len(ended)} session(s) ended", {"ended": ended})


# ------------------------------------------------------------------------ accounts
def _password(args: dict[str, Any]) -> str:
    password = args.get("password")
    if not isinstance(password, str) or not password:
        raise AdminError("bad-request", 'missing argument "password"')
    if len(password) > 1024:
        raise AdminError("bad-request", "the password is longer than 1024 characters")
    return password


def _invalidate(server: Server, localpart: str) -> None:
    """Drop cached credentials of ``localpart`` (the internal backend caches them 60 s)."""
    invalidate = getattr(server.authenticator, "invalidate", None)
    if invalidate is not None:
        invalidate(localpart)


@command("user-add")
async def cmd_user_add(server: Server, args: dict[str, Any]) -> Reply:
    _internal_accounts(server)
    local, password = user_localpart(text_arg(args, "user", limit=1024)), _password(args)
    try:
        await server.adb.run(server.database.create_user, local, password)
    except UserExists:
        raise AdminError("conflict", f"user {local} already exists") from None
    except (StorageError, ValueError) as exc:
        raise AdminError("bad-request", str(exc)) from None
    _invalidate(server, local)
    return Reply(f"created {local}@{server.config.server.domain}")


@command("user-passwd")
async def cmd_user_passwd(server: Server, args: dict[str, Any]) -> Reply:
    _internal_accounts(server)
    local, password = user_localpart(text_arg(args, "user", limit=1024)), _password(args)
    try:
        await server.adb.run(server.database.set_password, local, password)
    except UnknownUser:
        raise AdminError("not-found", f"no such user {local}") from None
    except (StorageError, ValueError) as exc:
        raise AdminError("bad-request", str(exc)) from None
    _invalidate(server, local)
    jid = JID(local, server.config.server.domain, None)
    ended = await _end_all(server, jid, "reset", "the password was changed: log in again")
    return Reply(f"password changed for {jid}", {"ended": ended})


@command("user-del")
async def cmd_user_del(server: Server, args: dict[str, Any]) -> Reply:
    _internal_accounts(server)
    local = user_localpart(text_arg(args, "user", limit=1024))
    try:
        existed = await server.adb.run(server.database.delete_user, local)
    except StorageError as exc:
        raise AdminError("bad-request", str(exc)) from None
    _invalidate(server, local)
    jid = JID(local, server.config.server.domain, None)
    ended = await _end_all(server, jid, "not-authorized", "the account was deleted")
    if not existed:
        raise AdminError("not-found", f"no such user {local}")
    return Reply(f"deleted {jid}", {"ended": ended})


# ------------------------------------------------------------------------ nicks
def nick_scope(raw: str, service: str) -> str:
    """The ``--room`` of a nick registration: "" (every room) or a room's localpart."""
    return room_localpart(raw, service) if raw else ""


async def _reload_nicks(server: Server) -> None:
    if server.muc is not None:
        await server.muc.reload_nicks()


@command("register-nick")
async def cmd_register_nick(server: Server, args: dict[str, Any]) -> Reply:
    nick = text_arg(args, "nick", limit=1024)
    jid = parse_jid(text_arg(args, "jid", limit=3071))
    if jid.local is None:
        raise AdminError("bad-request", f"{jid} is not a user's JID")
    bare = str(jid.bare)
    scope = nick_scope(text_arg(args, "room", required=False), _service(server))
    try:
        await server.adb.run(MucStore(server.database).register_nick, nick, bare, scope)
    except ValueError as exc:
        raise AdminError("not-acceptable", str(exc)) from None
    await _reload_nicks(server)
    where = f"room {scope}" if scope else "every room"
    return Reply(f"nick {nick!r} reserved for {bare} in {where}")


@command("unregister-nick")
async def cmd_unregister_nick(server: Server, args: dict[str, Any]) -> Reply:
    nick = text_arg(args, "nick", limit=1024)
    scope = nick_scope(text_arg(args, "room", required=False), _service(server))
    try:
        existed = await server.adb.run(MucStore(server.database).unregister_nick, nick, scope)
    except ValueError as exc:
        raise AdminError("not-acceptable", str(exc)) from None
    if not existed:
        raise AdminError("not-found", f"nick {nick!r} was not registered")
    await _reload_nicks(server)
    return Reply(f"nick {nick!r} released")


def _service(server: Server) -> str:
    return server.config.muc.service_host(server.config.server.domain)


@command("sync-nicks")
async def cmd_sync_nicks(server: Server, args: dict[str, Any]) -> Reply:
    if server.config.auth.backend != "phpbb":
        raise AdminError("not-allowed", "sync-nicks reads the forum: set auth.backend = 'phpbb'")
    prune = bool_arg(args, "prune") or server.config.muc.sync_nicks_prune
    count, summary = await trio.to_thread.run_sync(sync_once, server.config, server.database, prune)
    await _reload_nicks(server)
    return Reply(f"{count} forum members: {summary}", {"members": count})


# ------------------------------------------------------------------------ rooms
@command("rooms")
async def cmd_rooms(server: Server, args: dict[str, Any]) -> Reply:
    muc = _muc(server)
    rows = []
    for name in sorted(muc.rooms):
        room = muc.rooms[name]
        s = room.settings
        rows.append(
            {
                "jid": room.jid_str,
                "title": s.title,
                "occupants": len(room.occupants),
                "persistent": s.persistent,
                "public": s.public,
                "members_only": s.members_only,
                "subject": room.subject,
            }
        )
    return Reply(f"{len(rows)} rooms", {"rooms": rows})


@command("occupants")
async def cmd_occupants(server: Server, args: dict[str, Any]) -> Reply:
    room = _room(server, args)
    rows = [
        {
            "nick": occ.nick,
            "jid": occ.bare,
            "resources": list(occ.sessions),
            "role": occ.role,
            "affiliation": room.affiliation(occ.bare),
        }
        for occ in sorted(room.occupants.values(), key=lambda o: o.key)
    ]
    return Reply(f"{len(rows)} occupants in {room.jid_str}", {"occupants": rows})


@command("say")
async def cmd_say(server: Server, args: dict[str, Any]) -> Reply:
    room = _room(server, args)
    text = xml_text(text_arg(args, "text", limit=10_000), "text")
    muc = _muc(server)
    muc.say(room, text)
    await muc.flush()
    return Reply(f"said in {room.jid_str} ({len(room.occupants)} occupants)")


@command("subject")
async def cmd_subject(server: Server, args: dict[str, Any]) -> Reply:
    room = _room(server, args)
    if not isinstance(args.get("text"), str):
        raise AdminError("bad-request", 'missing argument "text" ("" clears the subject)')
    text = xml_text(text_arg(args, "text", required=False, limit=10_000), "text")
    muc = _muc(server)
    muc.set_subject(room, text)
    await muc.flush()
    return Reply(f"subject of {room.jid_str} set")


def _affiliation(server: Server, room: Room, args: dict[str, Any], aff: str) -> str:
    """Apply ``aff`` to the ``jid`` argument's bare JID; returns it."""
    bare = str(parse_jid(text_arg(args, "jid", limit=3071)).bare)
    try:
        _muc(server).set_affiliation(room, bare, aff, _reason(args) or None)
    except StanzaError as err:
        code = err.condition if err.condition in ("not-allowed", "conflict") else "bad-request"
        raise AdminError(code, err.text or err.condition) from None
    return bare


@command("room-ban")
async def cmd_room_ban(server: Server, args: dict[str, Any]) -> Reply:
    room = _room(server, args)
    before = len(room.occupants)
    bare = _affiliation(server, room, args, "outcast")
    await _muc(server).flush()
    removed = before - len(room.occupants)
    return Reply(f"{bare} banned from {room.jid_str} ({removed} occupant(s) removed)")


@command("room-unban")
async def cmd_room_unban(server: Server, args: dict[str, Any]) -> Reply:
    room = _room(server, args)
    bare = str(parse_jid(text_arg(args, "jid", limit=3071)).bare)
    if room.affiliations.get(bare) != "outcast":
        raise AdminError("not-found", f"{bare} is not banned from {room.jid_str}")
    _affiliation(server, room, args, "none")
    await _muc(server).flush()
    return Reply(f"{bare} may enter {room.jid_str} again")


@command("destroy-room")
async def cmd_destroy_room(server: Server, args: dict[str, Any]) -> Reply:
    room = _room(server, args)
    muc = _muc(server)
    occupants = len(room.occupants)
    muc.destroy(room, _reason(args) or None)
    await muc.flush()
    seeded = {_seed_name(seed.name, muc.domain) for seed in server.config.muc.rooms}
    note = " (listed in muc.rooms: it is created again at the next start)"
    return Reply(
        f"destroyed {room.jid_str} ({occupants} occupant(s) told)"
        + (note if room.name in seeded else "")
    )


def _seed_name(name: str, service: str) -> str:
    try:
        return room_localpart(name, service)
    except AdminError:
        return name


# ------------------------------------------------------------------------ server
@command("stats")
async def cmd_stats(server: Server, args: dict[str, Any]) -> Reply:
    stats = server.stats()
    return Reply(f"{stats['sessions']} sessions, {stats['rooms']} rooms", stats)


@command("reload")
async def cmd_reload(server: Server, args: dict[str, Any]) -> Reply:
    """Re-read the configuration and apply what can change live (as SIGHUP does)."""
    try:
        report = await server.reload()
    except ConfigError as exc:
        raise AdminError("bad-config", f"configuration error: {exc}") from None
    return Reply(report.summary(), report.as_dict())


def _count_arg(args: dict[str, Any], name: str, default: int) -> int:
    value = args.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100:
        raise AdminError("bad-request", f'argument "{name}" must be an integer 1..100')
    return value


@command("memory-trace")
async def cmd_memory_trace(server: Server, args: dict[str, Any]) -> Reply:
    """tracemalloc in the running server: ``action`` start (``frames``, default 10),
    snapshot (after a full garbage collection; written under data_dir, the path is
    answered), stop, collect (a full collection and heap trim, without tracing), types
    (``top`` types whose object count changed most since the last ``types``) or
    referrers (who holds a ``sample`` of the objects of ``type``).
    For ``bench/memory_cycles.py`` and leak hunts."""
    action = text_arg(args, "action", limit=16)
    if action == "start":
        started = memory.trace_start(_count_arg(args, "frames", 10))
        return Reply(
            "tracing started" if started else "tracing was already on", {"started": started}
        )
    if action == "collect":
        freed, tracked = memory.collect()
        return Reply(f"{freed} objects freed", {"freed": freed, "tracked": tracked})
    if action == "types":
        growth = memory.type_growth(_count_arg(args, "top", 30))
        return Reply(
            f"{len(growth)} types changed",
            {"types": [{"type": n, "count": c, "change": d} for n, c, d in growth]},
        )
    if action == "referrers":
        name = text_arg(args, "type", limit=200)
        return Reply(name, {"referrers": memory.referrers(name, _count_arg(args, "sample", 5))})
    if action == "stop":
        stopped = memory.trace_stop()
        return Reply("tracing stopped" if stopped else "tracing was off", {"stopped": stopped})
    if action != "snapshot":
        known = "start, snapshot, stop, collect, types, referrers"
        raise AdminError("bad-request", f"unknown action {action!r} ({known})")
    try:
        snapshot, collected = memory.trace_snapshot()
    except RuntimeError:
        raise AdminError("not-allowed", "tracemalloc is not running (action start first)") from None
    path = await trio.to_thread.run_sync(memory.dump_snapshot, snapshot, server.config.data_path)
    current, peak = memory.traced_sizes()
    return Reply(
        f"snapshot written to {path}",
        {"path": str(path), "traced": current, "peak": peak, "gc_collected": collected},
    )
