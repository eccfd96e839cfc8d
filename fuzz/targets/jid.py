"""JID parsing and PRECIS preparation (xmppd/jid.py, RFC 7622) and XEP-0106 escaping.

Invariants:
- a string is a JID or ``JIDError`` (never another exception);
- preparation is idempotent: the printed form of a JID parses to the same JID, and
  ``JID.make`` of its parts gives it back;
- every part stays within 1023 octets, and the printed form splits back into the same parts;
- ``unescape_localpart(escape_localpart(name)) == name``, and a username maps to a
  localpart or ``JIDError``.
"""

from __future__ import annotations

import atheris

from xmppd.jid import (
    JID,
    JIDError,
    escape_localpart,
    localpart_for_username,
    nameprep_domain,
    nodeprep,
    resourceprep,
    unescape_localpart,
)


def check_jid(text: str) -> None:
    try:
        jid = JID.parse(text)
    except JIDError:
        return
    for part in (jid.local, jid.domain, jid.resource):
        assert part is None or 0 < len(part.encode("utf-8", "surrogatepass")) <= 1023, jid
    printed = str(jid)
    again = JID.parse(printed)
    assert again == jid, (text, jid, again)
    assert str(again) == printed
    assert JID.make(jid.local, jid.domain, jid.resource) == jid
    if jid.local is not None:
        assert nodeprep(jid.local) == jid.local
    assert nameprep_domain(jid.domain) == jid.domain
    if jid.resource is not None:
        assert resourceprep(jid.resource) == jid.resource
    assert jid.bare.resource is None and jid.bare.domain == jid.domain


def check_username(name: str) -> None:
    try:
        escaped = escape_localpart(name)
    except JIDError:
        return
    assert unescape_localpart(escaped) == name, (name, escaped)
    try:
        local = localpart_for_username(name)
    except JIDError:
        return
    assert nodeprep(local) == local
    assert JID.make(local, "example.com").local == local


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    kind = fdp.ConsumeIntInRange(0, 3)
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    if kind == 0:
        check_username(text)
    elif kind == 1:  # the usual shape, so most inputs get past the separators
        check_jid(f"{text}@example.com/{text}")
    else:
        check_jid(text)
