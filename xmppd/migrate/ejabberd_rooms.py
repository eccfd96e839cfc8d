"""A room's ``opts`` as ejabberd 23.01 stores them → :class:`Room` and :class:`Affiliation`.

ejabberd keeps a persistent room as one proplist, the same in Mnesia (``#muc_room.opts``)
and in SQL (``muc_room.opts``, that proplist printed by ``io_lib:print``). Its shape is
``mod_muc_room:make_opts/2`` (ejabberd 23.01, src/mod_muc_room.erl): every field of the
``#config{}`` record (include/mod_muc_room.hrl, with its defaults), then ``affiliations``
(``[{{User, Server, Resource}, Affiliation | {Affiliation, Reason}}]``), ``roles``,
``subject`` (a list of xmpp's ``#text{lang, data}`` records; older rooms have a binary),
``subject_author``, ``hats_users``, ``hibernation_time`` and (Mnesia only) ``subscribers``.
``set_opts/2`` reads them back and ignores what it does not know: so do we, except that a
setting xmppd has no equivalent for is reported (as a :class:`Problem`) when its value is not
ejabberd's default, so an operator sees what does not move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xmppd.migrate.erlang_terms import Atom, Charlist, format_term, parse_term, text
from xmppd.migrate.model import Affiliation, Kind, Problem, Room

__all__ = ["RoomParts", "convert_room", "parse_sql_opts", "room_jid"]

_TRUE, _FALSE = Atom("true"), Atom("false")
AFFILIATIONS = frozenset({"owner", "admin", "member", "outcast"})

#: Options xmppd has no setting for, with ejabberd 23.01's default (#config{} in
#: include/mod_muc_room.hrl): a different value is reported, the default is not.
UNMAPPED_DEFAULTS: dict[str, Any] = {
    "allow_query_users": _TRUE,
    "allow_visitor_status": _TRUE,
    "allow_visitor_nickchange": _TRUE,
    "public_list": _TRUE,
    "captcha_protected": _FALSE,
    "members_by_default": _TRUE,
    "allow_user_invites": _FALSE,
    "allow_subscription": _FALSE,
    "allow_voice_requests": _TRUE,
    "voice_request_min_interval": 1800,
    "presence_broadcast": [Atom("moderator"), Atom("participant"), Atom("visitor")],
    "vcard": b"",
    "pubsub": b"",
    "enable_hats": _FALSE,
    "captcha_whitelist": [],
    "roles": [],
    "hats_users": [],
    "subscribers": [],
}

#: Options read for the records below, or meaningless outside ejabberd (derived or
#: bookkeeping: the vCard hash, the archive switches xmppd does not have per room, the
#: room's language, when it was last hibernated).
KNOWN = frozenset(
    {
        "title",
        "description",
        "public",
        "persistent",
        "members_only",
        "moderated",
        "password_protected",
        "password",
        "anonymous",
        "allow_change_subj",
        "allow_private_messages",
        "allow_private_messages_from_visitors",
        "max_users",
        "subject",
        "subject_author",
        "affiliations",
        "vcard_xupdate",
        "logging",
        "mam",
        "lang",
        "hibernation_time",
    }
)


@dataclass(slots=True)
class RoomParts:
    """What one ``muc_room`` row becomes: the room (None when unusable), its
    affiliations, and what could not be carried over (each Problem has its kind)."""

    room: Room | None
    affiliations: list[Affiliation] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def room_jid(name: Any, host: Any) -> str:
    """``name@host`` from the binaries of ``{Name, Host}``."""
    return f"{text(name)}@{text(host)}"


def parse_sql_opts(value: str | bytes) -> Any:
    """The term in SQL's ``muc_room.opts``.

    ejabberd writes it with ``list_to_binary(io_lib:print(Opts))`` (misc:term_to_expr/1):
    one byte per printed character, a binary's UTF-8 bytes included. A driver that hands
    the column back as ``str`` decoded those bytes as UTF-8, so they are re-encoded first.
    """
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return parse_term(raw)


def _bool(value: Any) -> bool:
    if value == "true" and isinstance(value, Atom):
        return True
    if value == "false" and isinstance(value, Atom):
        return False
    raise ValueError(f"not a boolean: {_shown(value)}")


def _text(value: Any) -> str:
    if isinstance(value, bytes | list):
        return text(value)
    raise ValueError(f"not a text but {type(value).__name__}")  # it may be a password


def _subject(value: Any) -> str:
    """``[#text{lang, data}]`` (23.01) or a binary (older): the text without a language,
    else the first one."""
    if isinstance(value, bytes) or (isinstance(value, list) and not value):
        return _text(value)
    if isinstance(value, Charlist):
        return _text(value)
    if isinstance(value, list):
        texts = []
        for item in value:
            if not (isinstance(item, tuple) and len(item) == 3 and item[0] == "text"):
                raise ValueError(f"not a #text{{}} record: {_shown(item)}")
            texts.append((_text(item[1]), _text(item[2])))
        return next((data for lang, data in texts if not lang), texts[0][1])
    raise ValueError(f"not a subject: {_shown(value)}")


def _allow_pm(opts: dict[str, Any], problems: list[str]) -> str:
    if not _bool(opts.get("allow_private_messages", _TRUE)):
        return "none"
    visitors = opts.get("allow_private_messages_from_visitors", Atom("anyone"))
    if visitors == "anyone":
        return "anyone"
    if visitors == "nobody":
        return "participants"
    if visitors == "moderators":
        problems.append(
            "allow_private_messages_from_visitors = moderators: xmppd cannot let visitors "
            "write to moderators only, so visitors may send no private message"
        )
        return "participants"
    raise ValueError(f"allow_private_messages_from_visitors: {_shown(visitors)}")


def _room(jid: str, opts: dict[str, Any], problems: list[str]) -> Room:
    password: str | None = None
    if _bool(opts.get("password_protected", _FALSE)):
        password = _text(opts.get("password", b""))
        if not password:
            problems.append("password_protected with an empty password: imported unprotected")
            password = None
    max_users = opts.get("max_users", 200)
    if max_users == "none":
        max_users = None
    elif not isinstance(max_users, int) or max_users < 0:
        raise ValueError(f"max_users: {_shown(max_users)}")
    return Room(
        jid=jid,
        title=_text(opts.get("title", b"")),
        description=_text(opts.get("description", b"")),
        public=_bool(opts.get("public", _TRUE)),
        persistent=_bool(opts.get("persistent", _FALSE)),
        members_only=_bool(opts.get("members_only", _FALSE)),
        moderated=_bool(opts.get("moderated", _TRUE)),
        password=password,
        whois="moderators" if _bool(opts.get("anonymous", _TRUE)) else "anyone",
        change_subject=_bool(opts.get("allow_change_subj", _TRUE)),
        allow_pm=_allow_pm(opts, problems),
        max_occupants=max_users,
        subject=_subject(opts.get("subject", b"")),
        subject_nick=_text(opts.get("subject_author", b"")),
    )


def _affiliations(jid: str, value: Any, where: str, parts: RoomParts) -> None:
    if not isinstance(value, list):
        parts.problems.append(Problem(Kind.AFFILIATIONS, where, "affiliations is not a list"))
        return
    for item in value:
        try:
            (user, server, resource), aff = item
            reason = ""
            if isinstance(aff, tuple):
                aff, reason_term = aff
                reason = _text(reason_term)
            user, server, resource = _text(user), _text(server), _text(resource)
        except (TypeError, ValueError) as exc:
            parts.problems.append(
                Problem(Kind.AFFILIATIONS, where, f"malformed affiliation {_shown(item)}: {exc}")
            )
            continue
        who = f"{user}@{server}" if user else server
        if aff == "none":
            continue
        if not isinstance(aff, Atom) or aff not in AFFILIATIONS:
            parts.problems.append(
                Problem(Kind.AFFILIATIONS, where, f"unknown affiliation {_shown(aff)} of {who}")
            )
            continue
        if resource:
            parts.problems.append(
                Problem(
                    Kind.AFFILIATIONS,
                    where,
                    f"affiliation of the full JID {who}/{resource}: given to {who}",
                )
            )
        parts.affiliations.append(Affiliation(jid, who, str(aff), reason))


def _proplist(opts: Any) -> dict[str, Any]:
    if not isinstance(opts, list):
        raise ValueError("the options are not a list")
    out: dict[str, Any] = {}
    for item in opts:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Atom)):
            raise ValueError(f"not an option {{Name, Value}}: {_shown(item)}")
        out.setdefault(str(item[0]), item[1])  # proplists: the first one counts
    return out


def convert_room(jid: str, opts: Any, where: str) -> RoomParts:
    """The room ``jid`` (``name@service``) from its ejabberd ``opts`` term; ``where``
    says where the row is (for problems)."""
    try:
        props = _proplist(opts)
        notes: list[str] = []
        room = _room(jid, props, notes)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        return RoomParts(None, problems=[Problem(Kind.ROOMS, where, f"room {jid}: {exc}")])
    parts = RoomParts(room)
    parts.problems.extend(Problem(Kind.ROOMS, where, f"room {jid}: {n}") for n in notes)
    _affiliations(jid, props.get("affiliations", []), where, parts)
    for name, value in props.items():
        if name in KNOWN:
            continue
        if name not in UNMAPPED_DEFAULTS:
            parts.problems.append(Problem(Kind.ROOMS, where, f"room {jid}: unknown option {name}"))
        elif value != UNMAPPED_DEFAULTS[name]:
            parts.problems.append(
                Problem(Kind.ROOMS, where, f"room {jid}: {_describe(name, value)} not carried over")
            )
    return parts


def _describe(name: str, value: Any) -> str:
    if isinstance(value, list):
        return f"{name} ({len(value)} entries)"
    if isinstance(value, bytes):
        return f"{name} ({len(value)} bytes)"
    return f"{name} = {_shown(value)}"


def _shown(term: Any) -> str:
    try:
        shown = format_term(term)
    except (TypeError, ValueError):
        shown = repr(term)
    return shown if len(shown) < 60 else shown[:57] + "..."
