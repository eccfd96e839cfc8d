"""Forum usernames: phpBB's ``username_clean``, the JID localpart of a member, and which
members a SASL name may mean.

JID localparts: ``forum_localpart(username)`` is the project-wide
``xmppd.jid.localpart_for_username`` (XEP-0106 escaping, then ``nodeprep``: PRECIS
UsernameCaseMapped, i.e. width mapping, lower case, NFC), so MUC nick sync and the phpBB
backend always agree. It depends only on ``username``, so it is the same every login.
It is unique per forum account: the mapping keeps everything phpBB's ``username_clean``
is computed from (case folding and NFKC absorb width and case mapping), so two names
with one localpart have one ``username_clean`` — which phpBB keeps unique. To make that
a guarantee rather than an argument, ``forum_localpart`` re-checks the round trip and
refuses a localpart whose unescaped form does not clean to the member's own name. A
name that cannot become a valid localpart cannot log in (the reason is logged).
Renaming a member in the forum changes their JID.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from xmppd.jid import JIDError, localpart_for_username, unescape_localpart

#: What PHP's ``trim()`` strips.
PHP_TRIM = " \t\n\r\0\x0b"
#: Control characters: ``username_clean`` drops them (a name holding one is refused).
CONTROL = re.compile("[\x00-\x1f\x7f\x80-\x9f]+")
_MULTISPACE = re.compile(" {2,}")
# The entries of phpBB's homograph table (includes/utf/data/confusables.php) whose key
# is an ASCII character still present after case folding. Forum names often contain
# these (O'Brien, "Hey!"), so without them a password login by name would miss.
_ASCII_CONFUSABLES = str.maketrans(
    {"'": "\u02b9", '"': "\u02b9\u02b9", "?": "\u0294", "!": "\u01c3", "|": "\u4e28"}
)


def clean_username(name: str) -> str:
    """Approximate phpBB's ``utf8_clean_string()``, which fills ``users.username_clean``.

    Case folding plus NFKC, the ASCII part of phpBB's homograph table, control
    characters removed, runs of spaces collapsed, trimmed. The rest of the homograph
    table (Cyrillic/Greek look-alikes and friends) is deliberately not ported: SID
    logins never need it (the session row names the user and we only compare names
    for that one row), and a password login under a look-alike spelling only fails —
    it can never select a different account, because the lookup is an equality on the
    unique ``username_clean`` plus an exact match on ``username``.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    folded = folded.translate(_ASCII_CONFUSABLES)
    folded = CONTROL.sub("", folded)
    folded = _MULTISPACE.sub(" ", folded)
    return folded.strip(PHP_TRIM)


def forum_localpart(username: str) -> str:
    """The JID localpart of the forum member called ``username`` (see module docstring).

    Raises :class:`JIDError` when the name cannot be a localpart.
    """
    local = localpart_for_username(username)
    if clean_username(unescape_localpart(local)) != clean_username(username):
        raise JIDError("forum name does not survive JID normalisation")
    return local


def name_candidates(authcid: str) -> list[str]:
    """The forum names a SASL authcid may mean: the XEP-0106-unescaped form first."""
    candidates: list[str] = []
    try:
        unescaped = unescape_localpart(authcid)
    except (JIDError, ValueError):
        unescaped = authcid
    for name in (unescaped, authcid):
        if name and name not in candidates:
            candidates.append(name)
    return candidates


def names_user(candidates: Sequence[str], username: str, username_clean: str) -> bool:
    """Whether one of ``candidates`` names the forum member with these names."""
    cleaned = {username_clean, clean_username(username)}
    return any(c == username or clean_username(c) in cleaned for c in candidates)


def name_key(candidates: Sequence[str]) -> str:
    """Limiter key for a name before any lookup: what phpBB's ``username_clean`` holds."""
    return "name:" + clean_username(candidates[0])


def member_key(user_id: int) -> str:
    """Limiter key for a resolved forum member."""
    return f"user:{int(user_id)}"
