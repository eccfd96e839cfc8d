"""MUC nick normalisation (xmppd/muc/nicks.py: RFC 8266 PRECIS, UTS #39 look-alikes).

Invariants:
- a nick is accepted (its key returned) or refused with ``NickError`` carrying a defined
  stanza-error condition; never another exception;
- the key is idempotent (the key of a key is itself) and a valid nick looks like itself;
- the spoof checks and glob patterns never raise on any nick or pattern.
"""

from __future__ import annotations

import atheris

from xmppd.muc.nicks import (
    NickError,
    check_nick,
    check_script,
    look_alike,
    nick_key,
    nick_matches,
    nick_skeletons,
)
from xmppd.xml.errors import STANZA_ERROR_TYPES


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    max_length = fdp.ConsumeIntInRange(1, 64)
    pattern = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 8))
    nick = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    try:
        key = check_nick(nick, max_length)
    except NickError as err:
        assert err.condition in STANZA_ERROR_TYPES, err.condition
        return
    assert key and nick_key(key) == key, (nick, key)
    assert look_alike(nick, nick)
    assert nick_skeletons(nick)
    try:
        check_script(nick)
    except NickError as err:
        assert err.condition == "not-acceptable"
    nick_matches(key, [pattern, "*"])
    if not any(c in nick for c in "*?["):  # a glob matches itself when it has no wildcard
        assert nick_matches(key, [nick]), (nick, key)
