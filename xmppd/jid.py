"""XMPP addresses (RFC 7622) and XEP-0106 escaping of forum usernames.

Every stanza carries up to two JIDs, so :meth:`JID.parse` is memoised: the PRECIS
profiles are slow (tens of microseconds) and the same few thousand addresses recur.
The preparation functions are memoised too, so a new resource on a known domain only
pays for the part that is new.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

import idna
from precis_i18n import get_profile

__all__ = [
    "JID",
    "JIDError",
    "escape_localpart",
    "localpart_for_username",
    "nameprep_domain",
    "nodeprep",
    "resourceprep",
    "unescape_localpart",
]

MAX_PART_OCTETS = 1023
# Cheap guard before running PRECIS: no mapping shrinks text by more than 4x.
_MAX_RAW_CHARS = 4 * MAX_PART_OCTETS

_LOCALPART_PROFILE = get_profile("UsernameCaseMapped")
_RESOURCE_PROFILE = get_profile("OpaqueString")

# RFC 7622 §3.3.1: allowed by the PRECIS profile but forbidden in XMPP localparts.
_LOCALPART_FORBIDDEN = frozenset("\"&'/:<>@")
# RFC 7622 §3.2: full stops that separate domain labels.
_LABEL_SEPARATORS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


class JIDError(ValueError):
    """A string that is not a valid XMPP address or address part."""


def _check_octets(value: str, what: str) -> None:
    if not value:
        raise JIDError(f"empty {what}")
    if len(value.encode("utf-8")) > MAX_PART_OCTETS:
        raise JIDError(f"{what} longer than {MAX_PART_OCTETS} octets")


#: Entries in each cache of full addresses (parsed JIDs, prepared resources, MUC
#: recipients). They must hold the addresses in use now (sessions, room occupants), not
#: every one ever seen: clients choose a fresh random resource at each login, and caches
#: of 65,536 entries grew by 1-2 KiB per login until full, some 70 MB (tests/unit/
#: test_jid_cache_memory.py; RSS in ``bench/memory_cycles.py``). A miss costs one PRECIS
#: preparation.
FULL_JID_CACHE = 8192


@lru_cache(maxsize=16384)
def nodeprep(value: str) -> str:
    """Enforce the RFC 7622 localpart rules (PRECIS UsernameCaseMapped + §3.3.1)."""
    if not value or len(value) > _MAX_RAW_CHARS:
        raise JIDError("localpart is empty or too long")
    try:
        prepared = _LOCALPART_PROFILE.enforce(value)
    except UnicodeError as exc:
        raise JIDError(f"invalid localpart: {exc.reason}") from None
    _check_octets(prepared, "localpart")
    if not _LOCALPART_FORBIDDEN.isdisjoint(prepared):
        raise JIDError("localpart contains a character RFC 7622 forbids")
    return prepared


@lru_cache(maxsize=FULL_JID_CACHE)
def resourceprep(value: str) -> str:
    """Enforce the RFC 7622 resourcepart rules (PRECIS OpaqueString; case is kept)."""
    if not value or len(value) > _MAX_RAW_CHARS:
        raise JIDError("resourcepart is empty or too long")
    try:
        prepared = _RESOURCE_PROFILE.enforce(value)
    except UnicodeError as exc:
        raise JIDError(f"invalid resourcepart: {exc.reason}") from None
    _check_octets(prepared, "resourcepart")
    return prepared


@lru_cache(maxsize=4096)
def nameprep_domain(value: str) -> str:
    """Normalise a domainpart: IP literal, or host name as lowercase U-labels.

    RFC 7622 §3.2: one trailing dot is dropped, IPv6 literals keep their brackets,
    IDNs are checked against IDNA2008 (UTS #46 mapping) and kept as U-labels so that
    ``xn--`` and Unicode spellings of one domain compare equal.
    """
    if not value or len(value) > _MAX_RAW_CHARS:
        raise JIDError("domainpart is empty or too long")
    if value.startswith("["):
        return _ipv6_literal(value)
    domain = unicodedata.normalize("NFC", value.translate(_LABEL_SEPARATORS))
    if domain.endswith("."):
        domain = domain[:-1]
    _check_octets(domain, "domainpart")
    if domain.startswith(".") or domain.endswith(".") or ".." in domain:
        # only one final dot is dropped: an empty label is left (RFC 1034 §3.1), and IDNA
        # would keep it as the absolute form, which a second parse would strip again
        raise JIDError("empty label in domainpart")
    if domain.isascii():
        domain = domain.lower()
        labels = domain.split(".")
        if all(_LDH_LABEL.match(label) for label in labels) and not any(
            label.startswith("xn--") for label in labels
        ):
            return domain
    try:
        domain = idna.decode(idna.encode(domain, uts46=True))
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise JIDError(f"invalid domainpart: {exc}") from None
    _check_octets(domain, "domainpart")
    return domain


def _ipv6_literal(value: str) -> str:
    if not value.endswith("]"):
        raise JIDError("unterminated IPv6 literal")
    try:
        address = ipaddress.IPv6Address(value[1:-1])
    except ValueError:
        raise JIDError("invalid IPv6 literal") from None
    return f"[{address.compressed}]"


@dataclass(frozen=True, slots=True)
class JID:
    """A prepared XMPP address. Build with :meth:`parse` or :meth:`make`, not directly.

    The constructor trusts its arguments (it is the fast path for parts that were
    already prepared); equality and hashing are by value, so prepared JIDs compare
    the way RFC 7622 §3 says addresses compare.
    """

    local: str | None
    domain: str
    resource: str | None = None
    # Filled on first use (a JID is immutable, and the parse cache hands out the same
    # object for the same text): every stanza asks for ``str()`` and ``.bare`` several
    # times on its way (routing, blocking, carbons, archive), and a dataclass would
    # build them anew each time. Unset slots, not fields: no cost to build a JID.
    _text: str = field(init=False, repr=False, compare=False, hash=False)
    _bare: JID = field(init=False, repr=False, compare=False, hash=False)

    @classmethod
    def parse(cls, text: str) -> JID:
        """Parse and prepare ``text``; raise :class:`JIDError` if it is not a JID."""
        return _parse(text)

    @classmethod
    def make(cls, local: str | None, domain: str, resource: str | None = None) -> JID:
        """Build a JID from unprepared parts (``None`` means absent, ``""`` is an error)."""
        return _make(local, domain, resource)

    @property
    def bare(self) -> JID:
        """The JID without its resource (RFC 6120 "bare JID")."""
        if self.resource is None:
            return self
        try:
            return self._bare
        except AttributeError:
            bare = JID(self.local, self.domain, None)
            object.__setattr__(self, "_bare", bare)
            return bare

    def __reduce__(self) -> tuple[type[JID], tuple[str | None, str, str | None]]:
        """Pickle and copy by the three parts (the caches may be unset)."""
        return (JID, (self.local, self.domain, self.resource))

    def __copy__(self) -> JID:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, object]) -> JID:
        return self

    @property
    def is_bare(self) -> bool:
        return self.resource is None

    @property
    def is_domain(self) -> bool:
        """True for a domain-only address (a server or component), no local, no resource."""
        return self.local is None and self.resource is None

    def __str__(self) -> str:
        try:
            return self._text
        except AttributeError:
            text = self.domain if self.local is None else f"{self.local}@{self.domain}"
            if self.resource is not None:
                text = f"{text}/{self.resource}"
            object.__setattr__(self, "_text", text)
            return text


@lru_cache(maxsize=FULL_JID_CACHE)
def _make(local: str | None, domain: str, resource: str | None) -> JID:
    return JID(
        None if local is None else nodeprep(local),
        nameprep_domain(domain),
        None if resource is None else resourceprep(resource),
    )


@lru_cache(maxsize=FULL_JID_CACHE)
def _parse(text: str) -> JID:
    # RFC 7622 §3.2: the resource starts at the first '/', the localpart ends at the
    # first '@' before it (a '@' or '/' inside the resource is legal).
    address, slash, resource = text.partition("/")
    if slash and not resource:
        raise JIDError("empty resourcepart")
    local, at, domain = address.partition("@")
    if not at:
        return _make(None, address, resource if slash else None)
    if not local:
        raise JIDError("empty localpart")
    return _make(local, domain, resource if slash else None)


# --- XEP-0106 -------------------------------------------------------------------

_ESCAPES = {
    " ": "\\20",
    '"': "\\22",
    "&": "\\26",
    "'": "\\27",
    "/": "\\2f",
    ":": "\\3a",
    "<": "\\3c",
    ">": "\\3e",
    "@": "\\40",
}
_CODES = frozenset(code[1:] for code in _ESCAPES.values()) | {"5c"}
_UNESCAPE_RE = re.compile(r"\\(20|22|26|27|2f|3a|3c|3e|40|5c)")


def _folds_to_code(pair: str) -> bool:
    # The localpart profile maps fullwidth forms and upper case, so "\2F" or a
    # fullwidth "20" would become an escape sequence after nodeprep: treat them as one.
    return unicodedata.normalize("NFKC", pair).lower() in _CODES


def escape_localpart(name: str) -> str:
    """Escape a human name (a forum username) into localpart form per XEP-0106.

    The nine characters a localpart cannot hold become ``\\hh``. A backslash becomes
    ``\\5c`` only when it is followed by something that reads (or, after PRECIS case
    and width mapping, would read) as an escape sequence; other backslashes stay as
    they are, as XEP-0106 §4.1 rule 7 asks. So ``unescape_localpart`` inverts this
    exactly. Leading or trailing spaces raise :class:`JIDError`: XEP-0106 forbids
    ``\\20`` at either end, and phpBB trims usernames, so no forum name has them.
    """
    if name[:1] == " " or name[-1:] == " ":
        raise JIDError("a localpart cannot begin or end with an escaped space")
    out: list[str] = []
    for index, char in enumerate(name):
        if char == "\\":
            out.append("\\5c" if _folds_to_code(name[index + 1 : index + 3]) else char)
        else:
            out.append(_ESCAPES.get(char, char))
    return "".join(out)


def unescape_localpart(local: str) -> str:
    """Turn an escaped localpart back into the human name (XEP-0106 §3.3).

    Only the ten defined sequences, in lower case, are decoded; anything else
    (``\\2F``, ``\\41``, a lone backslash) is left untouched, as §4.3 requires.
    """
    if "\\" not in local:
        return local
    return _UNESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), local)


def localpart_for_username(name: str) -> str:
    """Escape and prepare a forum username into the localpart it logs in as.

    Raises :class:`JIDError` if PRECIS would change which escape sequences the
    result holds (e.g. a fullwidth backslash before ``27``, or a combining accent
    after ``\\3e``): such a name could otherwise share a JID with another user.
    """
    escaped = escape_localpart(name)
    local = nodeprep(escaped)
    if _UNESCAPE_RE.findall(local) != _UNESCAPE_RE.findall(escaped):
        raise JIDError("username cannot be mapped to a distinct localpart")
    return local
