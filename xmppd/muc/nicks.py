"""Room nicknames: validation, comparison keys and the registered-nick registry (§7.10).

A nick is shown as the client wrote it (after the router's RFC 7622 resourceprep), but two
nicks *are the same nick* when their PRECIS ``NicknameCaseMapped`` forms are equal (RFC
8266): ``Admin``, ``admin``, a fullwidth (U+FF41...) ``admin`` and doubled inner spaces
all collide. Edge whitespace, control, format (zero-width, bidi) and other invisible
characters are refused outright rather than normalised away, so nobody can wear a nick
that merely *looks* like someone else's.

The registry maps ``(scope, key)`` to ``(nick, bare JID)``; the scope is a room's
localpart, or ``""`` for a registration that holds in every room of the service (what the
CLI and the phpBB sync write). It is an in-memory mirror of the ``muc_nicks`` table.
"""

from __future__ import annotations

import fnmatch
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from precis_i18n import get_profile

_NICK_PROFILE = get_profile("NicknameCaseMapped")

#: Unicode categories never allowed in a nick: controls, format characters (zero-width,
#: bidi overrides and isolates), unassigned, private use, surrogates, line/paragraph seps.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp"})
#: Characters that render as nothing but are not in the categories above.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e\u034f")

ALL_ROOMS = ""


class NickError(ValueError):
    """A nick the room refuses; ``condition`` is the stanza error to answer with."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


@lru_cache(maxsize=8192)
def nick_key(nick: str) -> str:
    """The comparison form of a nick (RFC 8266 NicknameCaseMapped); NickError if invalid."""
    try:
        key = _NICK_PROFILE.enforce(nick)
    except UnicodeError:
        text = "the nickname contains characters that are not allowed"
        raise NickError("jid-malformed", text) from None
    if not key:
        raise NickError("jid-malformed", "the nickname is empty")
    return key


def check_nick(nick: str, max_length: int) -> str:
    """Validate a nick for use in a room; return its key. Raises :class:`NickError`."""
    if not nick:
        raise NickError("jid-malformed", "a nickname is required")
    if len(nick) > max_length:
        raise NickError("not-acceptable", f"the nickname is longer than {max_length} characters")
    if nick != nick.strip() or nick[0].isspace() or nick[-1].isspace():
        raise NickError("not-acceptable", "the nickname cannot begin or end with a space")
    for char in nick:
        if unicodedata.category(char) in _REFUSED_CATEGORIES or char in _INVISIBLE:
            raise NickError("not-acceptable", "the nickname contains an invisible character")
    return nick_key(nick)


def nick_matches(key: str, patterns: Iterable[str]) -> bool:
    """Whether a nick (by its comparison ``key``) matches one of the glob ``patterns``.

    Patterns are normalised like nicks (``IRC*`` matches ``irc_bob`` and the fullwidth
    form of ``IRC``), so an allowance cannot be dodged with case or width variants.
    """
    for pattern in patterns:
        try:
            pattern_key = nick_key(pattern)
        except NickError:
            pattern_key = pattern.casefold()
        if fnmatch.fnmatchcase(key, pattern_key):
            return True
    return False


class NickRegistry:
    """Registered nicks by scope ("" = every room) and comparison key."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], tuple[str, str]] = {}
        self._by_jid: dict[tuple[str, str], str] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def replace_all(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Load ``(scope, nick, bare_jid)`` rows, dropping what is not among them."""
        by_key: dict[tuple[str, str], tuple[str, str]] = {}
        by_jid: dict[tuple[str, str], str] = {}
        for scope, nick, jid in rows:
            try:
                key = nick_key(nick)
            except NickError:
                continue
            by_key[(scope, key)] = (nick, jid)
            by_jid[(scope, jid)] = key
        self._by_key, self._by_jid = by_key, by_jid

    def add(self, scope: str, nick: str, jid: str) -> None:
        """Register ``nick`` to ``jid`` in ``scope`` (replacing ``jid``'s previous nick there)."""
        key = nick_key(nick)
        old_key = self._by_jid.pop((scope, jid), None)
        if old_key is not None:
            self._by_key.pop((scope, old_key), None)
        previous = self._by_key.get((scope, key))
        if previous is not None:
            self._by_jid.pop((scope, previous[1]), None)
        self._by_key[(scope, key)] = (nick, jid)
        self._by_jid[(scope, jid)] = key

    def remove_jid(self, scope: str, jid: str) -> bool:
        key = self._by_jid.pop((scope, jid), None)
        if key is None:
            return False
        self._by_key.pop((scope, key), None)
        return True

    def owner(self, room: str, key: str) -> str | None:
        """The bare JID that registered the nick with ``key`` for ``room``, if any."""
        hit = self._by_key.get((room, key)) or self._by_key.get((ALL_ROOMS, key))
        return None if hit is None else hit[1]

    def nick_of(self, room: str, jid: str) -> str | None:
        """The nick ``jid`` registered for ``room`` (a room-scoped one wins), if any."""
        for scope in (room, ALL_ROOMS):
            key = self._by_jid.get((scope, jid))
            if key is not None:
                return self._by_key[(scope, key)][0]
        return None

    def room_registration(self, room: str, jid: str) -> str | None:
        """The nick ``jid`` registered in-band in ``room`` itself (not service-wide)."""
        key = self._by_jid.get((room, jid))
        return None if key is None else self._by_key[(room, key)][0]
