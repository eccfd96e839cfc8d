"""RFC 7622 parsing/preparation and XEP-0106 escaping."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

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

FULLWIDTH_JULIET = "".join(chr(ord(c) + 0xFEE0) for c in "juliet")
FULLWIDTH_EXAMPLE = "".join(chr(ord(c) + 0xFEE0) for c in "example")

# RFC 7622 §3.5 (valid) and §3.6 (invalid), plus the separators edge cases of §3.2.
VALID = [
    ("juliet@example.com", ("juliet", "example.com", None)),
    ("juliet@example.com/foo", ("juliet", "example.com", "foo")),
    ("juliet@example.com/foo bar", ("juliet", "example.com", "foo bar")),
    ("juliet@example.com/foo@bar", ("juliet", "example.com", "foo@bar")),
    ("juliet@example.com/a/b@c", ("juliet", "example.com", "a/b@c")),
    ("foo\\20bar@example.com", ("foo\\20bar", "example.com", None)),
    ("fussball@example.com", ("fussball", "example.com", None)),
    ("fußball@example.com", ("fußball", "example.com", None)),
    ("π@example.com", ("π", "example.com", None)),
    ("\u03a3@example.com/foo", ("\u03c3", "example.com", "foo")),  # capital sigma
    ("\u03c3@example.com/foo", ("\u03c3", "example.com", "foo")),  # small sigma
    ("\u03c2@example.com/foo", ("\u03c2", "example.com", "foo")),  # final sigma
    ("king@example.com/♚", ("king", "example.com", "♚")),
    ("example.com", (None, "example.com", None)),
    ("example.com/foobar", (None, "example.com", "foobar")),
    ("a.example.com/b@example.net", (None, "a.example.com", "b@example.net")),
    ("Juliet@Example.COM/Balcony", ("juliet", "example.com", "Balcony")),
    ("example.com.", (None, "example.com", None)),
    # fullwidth "juliet@example" and an ideographic full stop
    (FULLWIDTH_JULIET + "@" + FULLWIDTH_EXAMPLE + "\u3002com", ("juliet", "example.com", None)),
    ("xn--mnchen-3ya.de", (None, "münchen.de", None)),
    ("romeo@MÜNCHEN.de", ("romeo", "münchen.de", None)),
    ("192.0.2.1/r", (None, "192.0.2.1", "r")),
    ("[::1]", (None, "[::1]", None)),
    ("juliet@[2001:DB8:0:0::1]/x", ("juliet", "[2001:db8::1]", "x")),
]

INVALID = [
    '"juliet"@example.com',  # §3.6: quote is forbidden in localparts
    "foo bar@example.com",  # space
    "@example.com/",  # empty localpart and resourcepart
    "@example.com",
    "henriⅣ@example.com",  # compatibility character
    "♚@example.com",  # symbol
    "juliet@",  # empty domainpart
    "/foobar",
    "juliet@example.com/",
    "",
    "a&b@example.com",
    "o'brien@example.com",
    "a:b@example.com",
    "a<b@example.com",
    "a>b@example.com",
    "a@b@example.com",  # '@' in the domainpart
    "ex ample.com",
    "-bad.example.com",
    "example..com",
    "example.com..",  # §3.2 drops one trailing dot; what is left still ends in an empty label
    "juliet@a..",  # (found by fuzz/targets/jid.py: it came back as "a.", then "a")
    ".example.com",
    ".",
    "[::1",
    "[not-an-ip]",
    "juliet@example.com/\x07bell",  # control character in the resource
    "ju\x00liet@example.com",
]


@pytest.mark.parametrize(("text", "parts"), VALID)
def test_valid_jids(text: str, parts: tuple[str | None, str, str | None]) -> None:
    jid = JID.parse(text)
    assert (jid.local, jid.domain, jid.resource) == parts


@pytest.mark.parametrize("text", INVALID)
def test_invalid_jids(text: str) -> None:
    with pytest.raises(JIDError):
        JID.parse(text)


def test_jiderror_is_valueerror() -> None:
    with pytest.raises(ValueError):
        JID.parse("juliet@")


def test_case_folding_and_equality() -> None:
    a = JID.parse("Juliet@Example.COM")
    b = JID.parse("juliet@example.com")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert str(a) == "juliet@example.com"


def test_resource_case_is_preserved() -> None:
    a = JID.parse("juliet@example.com/Balcony")
    assert a.resource == "Balcony"
    assert a != JID.parse("juliet@example.com/balcony")


def test_str_round_trips() -> None:
    for text in ("juliet@example.com/foo@bar/baz", "example.com", "example.com/x", "a@b.c"):
        jid = JID.parse(text)
        assert str(jid) == text
        assert JID.parse(str(jid)) == jid


def test_bare_and_flags() -> None:
    full = JID.parse("juliet@example.com/balcony")
    assert not full.is_bare
    assert full.bare == JID.parse("juliet@example.com")
    assert full.bare.is_bare
    bare = full.bare
    assert bare.bare is bare
    assert not full.is_domain
    assert JID.parse("example.com").is_domain
    assert not JID.parse("example.com/r").is_domain
    assert not JID.parse("juliet@example.com").is_domain


def test_frozen() -> None:
    jid = JID.parse("juliet@example.com")
    with pytest.raises(dataclasses.FrozenInstanceError):
        jid.local = "romeo"  # type: ignore[misc]


def test_parse_is_cached() -> None:
    assert JID.parse("cached@example.com/r") is JID.parse("cached@example.com/r")


def test_make_validates_each_part() -> None:
    assert JID.make("Juliet", "Example.com", "R") == JID.parse("juliet@example.com/R")
    assert JID.make(None, "example.com") == JID.parse("example.com")
    for bad in (("", "example.com", None), ("a", "", None), ("a", "example.com", "")):
        with pytest.raises(JIDError):
            JID.make(*bad)
    with pytest.raises(JIDError):
        JID.make("a@b", "example.com")
    with pytest.raises(JIDError):
        JID.make("a", "exa/mple.com")


def test_length_limits() -> None:
    assert len(JID.parse("a" * 1023 + "@example.com").local or "") == 1023
    with pytest.raises(JIDError):
        JID.parse("a" * 1024 + "@example.com")
    assert JID.parse("example.com/" + "r" * 1023).resource == "r" * 1023
    with pytest.raises(JIDError):
        JID.parse("example.com/" + "r" * 1024)
    # Limits count UTF-8 octets, not characters: 512 two-octet letters = 1024 octets.
    with pytest.raises(JIDError):
        JID.parse("é" * 512 + "@example.com")
    with pytest.raises(JIDError):
        JID.parse("x@" + ".".join(["a" * 63] * 17))  # 1087 octets


def test_prep_functions() -> None:
    assert nodeprep("Juliet") == "juliet"
    assert resourceprep("Ba\u00a0lcony") == "Ba lcony"  # OpaqueString maps NBSP to space
    assert nameprep_domain("EXAMPLE.com.") == "example.com"
    assert nameprep_domain("[0:0:0:0:0:0:0:1]") == "[::1]"
    bad_inputs = [
        (nodeprep, "a b"),
        (nodeprep, ""),
        (resourceprep, "\x01"),
        (nameprep_domain, "a b"),
    ]
    for func, bad in bad_inputs:
        with pytest.raises(JIDError):
            func(bad)


# --- XEP-0106 -------------------------------------------------------------------

# XEP-0106 §5.1 examples 1-8, plus forum names from the brief.
ESCAPES = [
    ("space cadet", "space\\20cadet"),
    ('call me "ishmael"', "call\\20me\\20\\22ishmael\\22"),
    ("at&t guy", "at\\26t\\20guy"),
    ("d'artagnan", "d\\27artagnan"),
    ("/.fanboy", "\\2f.fanboy"),
    ("::foo::", "\\3a\\3afoo\\3a\\3a"),
    ("<foo>", "\\3cfoo\\3e"),
    ("user@host", "user\\40host"),
    ("Jane Doe", "Jane\\20Doe"),
    ("a@b", "a\\40b"),
    ("O'Brien", "O\\27Brien"),
    ("x/y", "x\\2fy"),
    # A backslash is escaped only when it would otherwise read as an escape (§4.1 #7).
    ("c:\\net", "c\\3a\\net"),
    ("c:\\5commas", "c\\3a\\5c5commas"),
    ("\\27", "\\5c27"),
    ("\\5c", "\\5c5c"),
    ("\\\\20", "\\\\5c20"),
    ("a\\2Fb", "a\\5c2Fb"),  # nodeprep would lower-case it into "\2f"
    ("a\\\uff12\uff10b", "a\\5c\uff12\uff10b"),  # nor may fullwidth "20" become "\20"
    ("foo\\bar", "foo\\bar"),  # §4.3 invalid escape: unchanged
    ("\\2plus\\2is\\4", "\\2plus\\2is\\4"),  # §4.3 partial escapes: unchanged
    ("trailing\\", "trailing\\"),
]


@pytest.mark.parametrize(("name", "escaped"), ESCAPES)
def test_escape_and_unescape(name: str, escaped: str) -> None:
    assert escape_localpart(name) == escaped
    assert unescape_localpart(escaped) == name


def test_unescape_leaves_unknown_sequences() -> None:
    assert unescape_localpart("foob\\41r") == "foob\\41r"
    assert unescape_localpart("a\\2Fb") == "a\\2Fb"  # case is significant
    assert unescape_localpart("treville\\40musketeers.lit") == "treville@musketeers.lit"


@pytest.mark.parametrize("name", [" lead", "trail ", " "])
def test_edge_spaces_are_refused(name: str) -> None:
    with pytest.raises(JIDError):
        escape_localpart(name)


def test_localpart_for_username() -> None:
    assert localpart_for_username("Jane Doe") == "jane\\20doe"
    assert localpart_for_username("O'Brien") == "o\\27brien"
    assert JID.make(localpart_for_username("a@b"), "example.com") == JID.parse("a\\40b@example.com")
    assert unescape_localpart(localpart_for_username("A\\2Fb")) == "a\\2fb"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("\uff3c27x", "distinct"),  # fullwidth backslash + 27 would collide with "'x"
        (">\u0301", "distinct"),  # NFC would glue the accent onto "\3e", killing the escape
        ("tab\there", "invalid localpart"),  # PRECIS refuses control characters
    ],
)
def test_localpart_for_username_refuses_ambiguous_names(name: str, reason: str) -> None:
    with pytest.raises(JIDError, match=reason):
        localpart_for_username(name)


_names = st.text(min_size=1, max_size=40).filter(lambda s: s[0] != " " and s[-1] != " ")
_ascii_names = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40
).filter(lambda s: s[0] != " " and s[-1] != " ")


@given(_names)
def test_escape_round_trip(name: str) -> None:
    escaped = escape_localpart(name)
    assert unescape_localpart(escaped) == name
    assert not set(escaped) & set(" \"&'/:<>@")


@given(_ascii_names)
def test_ascii_forum_names_map_to_distinct_localparts(name: str) -> None:
    local = localpart_for_username(name)
    assert unescape_localpart(local) == name.lower()
    assert JID.make(local, "example.com").local == local
