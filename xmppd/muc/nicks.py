"""Room nicknames: validation, comparison keys, look-alikes and the registered-nick registry.

A nick is shown as the client wrote it (after the router's RFC 7622 resourceprep), but two
nicks *are the same nick* when their PRECIS ``NicknameCaseMapped`` forms are equal (RFC
8266): ``Admin``, ``admin``, a fullwidth (U+FF41...) ``admin`` and doubled inner spaces
all collide. Edge whitespace, control, format (zero-width, bidi) and other invisible
characters are refused outright rather than normalised away, so nobody can wear a nick
that merely *looks* like someone else's.

Two different nicks can still *look* the same: ``Admin`` spelt with a Cyrillic capital A
(U+0410), a Greek capital alpha (U+0391) or a Ukrainian i (U+0456); ``BiII`` (capital Is)
beside ``Bill``. Those are caught with the confusable *skeleton* of Unicode TR39 (UTS #39
§4): two strings are confusable when their skeletons are equal. :func:`nick_skeletons`
gives two per nick, of the PRECIS key (so case does not matter: ``ADMIN`` with a Cyrillic
A meets ``admin``) and of the nick as written (so ``I`` meets ``l``, which a case fold
would hide); two nicks look alike when they share one. A registered nick is protected
against every look-alike in every place a registered nick is compared: joining, changing
nick and registering.

Mixed scripts: outside its registered owner, a nick must pass TR39's *highly restrictive*
level (§5.2): one script (Common and Inherited characters, such as digits, punctuation and
emoji, go with any), or Latin with the scripts of one CJK writing system (Han with
Hiragana/Katakana, Han with Bopomofo, Han with Hangul), with no mixed digit systems.
``Jürgen``, ``Bob_2`` and ``山田Taro`` pass; ``Admin`` with a Cyrillic A (Cyrillic +
Latin) does not. ``muc.allow_mixed_script_nicks = true`` lifts this.

Both come from ICU's SpoofChecker (PyICU), the reference implementation of UTS #39, on the
system's ICU data (Debian 12: ICU 72, Unicode 15.0). Candidates on PyPI were checked first:
``confusable_homoglyphs`` (2024) and ``confusables`` (2021) compute no TR39 skeleton and
ship older data; ``disarm`` (2026, Unicode 17 data) documents that its key deliberately
departs from the TR39 skeleton (``m``/``rn``, ``I``/``l``, a filtered table) and resolves
scripts without Script_Extensions. ICU needs its headers to build PyICU (``libicu-dev``,
``pkg-config``, a C++ compiler); in exchange the data follows the distribution's ICU
and its security updates. PRECIS refuses code points unassigned in Python's Unicode
version (14.0 in 3.11, 15.0 in 3.12), so every character a nick may hold is in ICU 72's
tables; one ICU does not know (with a newer Python) has script Unknown, so beside any
letter it fails the mixed-script check.

The registry maps ``(scope, key)`` to a :class:`Registration`; the scope is a room's
localpart, or ``""`` for a registration that holds in every room of the service (what
the CLI and the phpBB sync write). The service-wide reservation wins: it is looked up
first, and a room-scoped registration of another user's reserved name (or a look-alike) is
released when the registry is loaded. It is an in-memory mirror of the ``muc_nicks``
table; skeletons are computed on load, not stored (no migration: the whole table is in
memory anyway, and unchanged rows reuse the previous load's work).
"""

from __future__ import annotations

import fnmatch
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import icu
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


_ICU = threading.local()


def _spoof_checker() -> icu.SpoofChecker:
    """One configured checker per thread (the CLI and worker threads call in too)."""
    checker = getattr(_ICU, "checker", None)
    if checker is None:
        checker = icu.SpoofChecker()
        checker.setRestrictionLevel(icu.URestrictionLevel.HIGHLY_RESTRICTIVE)
        checker.setChecks(icu.USpoofChecks.RESTRICTION_LEVEL | icu.USpoofChecks.MIXED_NUMBERS)
        _ICU.checker = checker
    return checker


@lru_cache(maxsize=16384)
def nick_skeletons(nick: str) -> frozenset[str]:
    """The TR39 skeletons of a valid nick: of its PRECIS key and of the nick as written.

    Two nicks look alike when these sets intersect (see the module docstring); a skeleton
    is a comparison key only, never shown.
    """
    checker = _spoof_checker()
    written = unicodedata.normalize("NFC", nick)
    # type 0: TR39's one skeleton (ICU's older "any case" variant is deprecated)
    return frozenset({checker.getSkeleton(0, nick_key(nick)), checker.getSkeleton(0, written)})


def look_alike(a: str, b: str) -> bool:
    """Whether two valid nicks are the same or confusable."""
    return bool(nick_skeletons(a) & nick_skeletons(b))


@lru_cache(maxsize=8192)
def is_mixed_script(nick: str) -> bool:
    """Whether ``nick`` fails TR39's highly restrictive level (or mixes digit systems)."""
    return _spoof_checker().check(nick) != 0


def check_script(nick: str) -> None:
    """Refuse a mixed-script nick (``not-acceptable``); see the module docstring."""
    if is_mixed_script(nick):
        text = "the nickname mixes writing systems (letters of look-alike scripts)"
        raise NickError("not-acceptable", text)


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


@dataclass(frozen=True, slots=True)
class Registration:
    """A registered nick: ``scope`` is a room's localpart or :data:`ALL_ROOMS`."""

    scope: str
    nick: str
    jid: str
    key: str
    skeletons: frozenset[str]


def make_registration(scope: str, nick: str, jid: str) -> Registration:
    """A :class:`Registration` with its comparison forms; :class:`NickError` if invalid."""
    return Registration(scope, nick, jid, nick_key(nick), nick_skeletons(nick))


class NickRegistry:
    """Registered nicks by scope ("" = every room), comparison key and skeleton."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], Registration] = {}
        self._by_jid: dict[tuple[str, str], str] = {}
        self._by_skeleton: dict[tuple[str, str], set[str]] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Registration]:
        return iter(list(self._by_key.values()))

    # -------------------------------------------------------------- loading
    def replace_all(self, rows: Iterable[tuple[str, str, str]]) -> list[Registration]:
        """Load ``(scope, nick, bare_jid)`` rows, dropping what is not among them.

        Service-wide rows are loaded first; a room-scoped row whose nick is another user's
        service-wide reservation, or looks like one, is not loaded but returned, so the
        caller can delete it and say so (the site-wide reservation wins everywhere).
        """
        known = {(r.scope, r.nick, r.jid): r for r in self._by_key.values()}
        fresh = NickRegistry()
        rooms: list[Registration] = []
        for scope, nick, jid in rows:
            reg = known.get((scope, nick, jid))
            if reg is None:
                try:
                    reg = make_registration(scope, nick, jid)
                except NickError:
                    continue
            if scope == ALL_ROOMS:
                fresh.put(reg)
            else:
                rooms.append(reg)
        released: list[Registration] = []
        for reg in rooms:
            if fresh.reserved_for_other(reg) is not None:
                released.append(reg)
            else:
                fresh.put(reg)
        self._by_key, self._by_jid = fresh._by_key, fresh._by_jid
        self._by_skeleton = fresh._by_skeleton
        return released

    def put(self, reg: Registration) -> None:
        """Add ``reg``, replacing its user's nick and its nick's holder in its scope."""
        old_key = self._by_jid.get((reg.scope, reg.jid))
        if old_key is not None:
            self._drop(reg.scope, old_key)
        previous = self._by_key.get((reg.scope, reg.key))
        if previous is not None:
            self._drop(reg.scope, previous.key)
        self._by_key[(reg.scope, reg.key)] = reg
        self._by_jid[(reg.scope, reg.jid)] = reg.key
        for skeleton in reg.skeletons:
            self._by_skeleton.setdefault((reg.scope, skeleton), set()).add(reg.key)

    def _drop(self, scope: str, key: str) -> Registration | None:
        reg = self._by_key.pop((scope, key), None)
        if reg is None:
            return None
        if self._by_jid.get((scope, reg.jid)) == key:
            del self._by_jid[(scope, reg.jid)]
        for skeleton in reg.skeletons:
            keys = self._by_skeleton.get((scope, skeleton))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_skeleton[(scope, skeleton)]
        return reg

    # -------------------------------------------------------------- changes
    def add(self, scope: str, nick: str, jid: str) -> None:
        """Register ``nick`` to ``jid`` in ``scope`` (replacing ``jid``'s previous nick there)."""
        self.put(make_registration(scope, nick, jid))

    def remove_jid(self, scope: str, jid: str) -> bool:
        key = self._by_jid.get((scope, jid))
        if key is None:
            return False
        self._drop(scope, key)
        return True

    # -------------------------------------------------------------- lookups
    def _look_alikes(self, scope: str, reg: Registration) -> Iterator[Registration]:
        seen: set[str] = set()
        for skeleton in reg.skeletons:
            for key in self._by_skeleton.get((scope, skeleton), ()):
                if key not in seen:
                    seen.add(key)
                    yield self._by_key[(scope, key)]

    def conflict(self, room: str, nick: str, jid: str) -> Registration | None:
        """The registration of someone else that keeps ``jid`` from using ``nick`` in ``room``.

        Service-wide before room-scoped, each by exact key first: a nick registered to
        ``jid`` itself is theirs even if an older registration of another user looks like
        it. Otherwise any other user's registration that ``nick`` looks like wins.
        """
        return self.conflict_with(make_registration(room, nick, jid))

    def conflict_with(self, reg: Registration) -> Registration | None:
        """:meth:`conflict` for a ready :class:`Registration` (its scope is the room)."""
        scopes = (ALL_ROOMS,) if reg.scope == ALL_ROOMS else (ALL_ROOMS, reg.scope)
        for scope in scopes:
            exact = self._by_key.get((scope, reg.key))
            if exact is not None:
                return None if exact.jid == reg.jid else exact
        for scope in scopes:
            for other in self._look_alikes(scope, reg):
                if other.jid != reg.jid:
                    return other
        return None

    def holds(self, scope: str, jid: str) -> bool:
        """Whether ``jid`` has a registration in exactly ``scope``."""
        return (scope, jid) in self._by_jid

    def reserved_for_other(self, reg: Registration) -> Registration | None:
        """The service-wide reservation of another user that ``reg`` equals or looks like."""
        exact = self._by_key.get((ALL_ROOMS, reg.key))
        if exact is not None:
            return None if exact.jid == reg.jid else exact
        for other in self._look_alikes(ALL_ROOMS, reg):
            if other.jid != reg.jid:
                return other
        return None

    def owner(self, room: str, key: str) -> str | None:
        """The bare JID that registered the nick with ``key`` for ``room``, if any."""
        hit = self._by_key.get((ALL_ROOMS, key)) or self._by_key.get((room, key))
        return None if hit is None else hit.jid

    def is_registered_to(self, room: str, key: str, jid: str) -> bool:
        """Whether the nick with ``key`` is registered to ``jid`` for ``room``."""
        return self.owner(room, key) == jid

    def nick_of(self, room: str, jid: str) -> str | None:
        """The nick ``jid`` registered for ``room`` (a room-scoped one wins), if any."""
        for scope in (room, ALL_ROOMS):
            key = self._by_jid.get((scope, jid))
            if key is not None:
                return self._by_key[(scope, key)].nick
        return None

    def room_registration(self, room: str, jid: str) -> str | None:
        """The nick ``jid`` registered in-band in ``room`` itself (not service-wide)."""
        key = self._by_jid.get((room, jid))
        return None if key is None else self._by_key[(room, key)].nick
