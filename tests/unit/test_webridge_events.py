"""webridge's sans-IO parts: datagram validation, the template table, the room signals."""

from __future__ import annotations

import json

import pytest
from lxml import etree

from bridges.webridge import config as wconfig
from bridges.webridge import room
from bridges.webridge.events import (
    MAX_DATAGRAM,
    TEMPLATES,
    BadDatagram,
    Event,
    parse_datagram,
    render,
)
from bridges.webridge.pacing import TokenBucket

URL = "https://forum.example/viewtopic.php?p=123"
TITLE = "How do I …"


def text_of(obj: dict[str, object] | str, **limits: int) -> str:
    data = obj.encode() if isinstance(obj, str) else json.dumps(obj).encode()
    return render(parse_datagram(data), **limits)


# ------------------------------------------------------------------ every type
@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            {"type": "reply", "who": "alice", "forum": "Calculators", "title": TITLE, "url": URL},
            f"alice replied to [Calculators] {TITLE}: {URL}",
        ),
        (
            {"type": "reply", "who": "alice", "title": TITLE, "url": URL},
            f"alice replied to {TITLE}: {URL}",
        ),
        (
            {
                "type": "new_topic",
                "who": "bob",
                "forum": "Calculators",
                "title": "TI-84",
                "url": URL,
            },
            f"bob started a new topic [Calculators] TI-84: {URL}",
        ),
        (
            {"type": "new_topic", "who": "bob", "title": "TI-84", "url": URL},
            f"bob started a new topic TI-84: {URL}",
        ),
        (
            {"type": "edit", "who": "carol", "forum": "News", "title": "Release", "url": URL},
            f"carol edited a post in [News] Release: {URL}",
        ),
        (
            {"type": "edit", "who": "carol", "title": "Release", "url": URL},
            f"carol edited a post in Release: {URL}",
        ),
        ({"type": "new_member", "who": "dave"}, "dave just registered. Welcome!"),
        (
            {"type": "new_member", "who": "dave", "url": URL},
            f"dave just registered. Welcome! {URL}",
        ),
        (
            {"type": "announcement", "title": "Maintenance tonight", "url": URL},
            f"Announcement: Maintenance tonight: {URL}",
        ),
        ({"type": "announcement", "title": "Maintenance"}, "Announcement: Maintenance"),
        ({"type": "announcement", "text": "Server moves"}, "Announcement: Server moves"),
        ({"type": "say", "who": "erin", "text": "hello all"}, "erin: hello all"),
        ({"type": "say", "text": "hello all"}, "hello all"),
        ({"type": "raw", "text": "as is <b>"}, "as is <b>"),
    ],
)
def test_every_type_renders(event: dict[str, object], expected: str) -> None:
    assert text_of(event) == expected


def test_table_is_covered() -> None:
    """Every type in the table has at least one case in the test above."""
    assert set(TEMPLATES) == {
        "new_topic",
        "reply",
        "edit",
        "new_member",
        "announcement",
        "say",
        "raw",
    }


def test_plain_text_datagram_is_raw() -> None:
    event = parse_datagram("Übung macht den Meister\nzweite Zeile".encode())
    assert event == Event("raw", {"text": "Übung macht den Meister\nzweite Zeile"})
    assert render(event) == "Übung macht den Meister\nzweite Zeile"


def test_numbers_are_accepted_as_text_and_extra_fields_ignored() -> None:
    got = text_of({"type": "reply", "who": 42, "title": "t", "url": URL, "forum_id": 7})
    assert got == f"42 replied to t: {URL}"


# ------------------------------------------------------------------ entities
def test_legacy_html_entities_are_decoded_once() -> None:
    got = text_of(
        {
            "type": "reply",
            "who": "O&#039;Brien",
            "forum": "Q&amp;A",
            "title": "x &lt; y &amp;amp; &quot;z&quot; &eacute;",
            "url": "https://f.example/v.php?t=1&amp;p=2",
        }
    )
    # decoded once: "&amp;amp;" becomes "&amp;" (text that really says &amp;), not "&"
    assert got == ('O\'Brien replied to [Q&A] x < y &amp; "z" é: https://f.example/v.php?t=1&p=2')


def test_plain_text_entities_decoded() -> None:
    assert text_of("Tom &amp; Jerry &#x263A;") == "Tom & Jerry ☺"


def test_control_characters_and_lone_surrogates_removed() -> None:
    data = b'{"type": "say", "who": "a\\u0000b", "text": "x\\u0007y\\ud800z\\ttab"}'
    assert render(parse_datagram(data)) == "ab: xyz\ttab"


def test_one_line_fields_collapse_whitespace() -> None:
    got = text_of({"type": "reply", "who": " al\nice ", "title": "a\r\n\tb", "url": URL})
    assert got == f"al ice replied to a b: {URL}"


# ------------------------------------------------------------------ length caps
def test_field_cap_keeps_url_whole() -> None:
    got = text_of(
        {"type": "reply", "who": "alice", "title": "t" * 500, "url": URL + "&x=" + "9" * 200},
        field_max_length=50,
    )
    assert got == "alice replied to " + "t" * 49 + "…: " + URL + "&x=" + "9" * 200


def test_message_cap() -> None:
    got = text_of("w " * 2000, max_length=100)
    assert len(got) == 100
    assert got.endswith("…")


def test_under_the_caps_nothing_is_cut() -> None:
    text = "x" * 1000
    assert text_of(text, max_length=1000) == text


# ------------------------------------------------------------------ bad datagrams
@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe not utf-8", "not_utf8"),
        (b"caf\xe9", "not_utf8"),
        (b'{"type": "reply", ', "not_json"),
        (b"{not json}", "not_json"),
        (b"[1, 2, 3]", "not_object"),
        (b'"just a string"', "not_utf8_or_raw"),
        (b'{"type": "self_destruct", "who": "x"}', "unknown_type"),
        (b'{"who": "x"}', "no_type"),
        (b'{"type": 3}', "no_type"),
        (b'{"type": "reply", "who": "alice", "url": "u"}', "missing_fields"),
        (b'{"type": "reply", "who": "alice", "title": "  ", "url": "u"}', "missing_fields"),
        (b'{"type": "new_member"}', "missing_fields"),
        (b'{"type": "reply", "who": ["a"], "title": "t", "url": "u"}', "bad_field"),
        (b'{"type": "reply", "who": true, "title": "t", "url": "u"}', "bad_field"),
        (b"", "empty"),
        (b"  \n ", "empty"),
        (b"[" * 100000, "oversized"),
        (b"x" * MAX_DATAGRAM, "oversized"),
        (b"x" * (1 << 20), "oversized"),
    ],
)
def test_bad_datagrams(data: bytes, reason: str) -> None:
    if reason == "not_utf8_or_raw":
        # a JSON string does not start with { or [: it is plain text, said as is
        assert render(parse_datagram(data)) == '"just a string"'
        return
    with pytest.raises(BadDatagram) as err:
        parse_datagram(data)
    assert err.value.reason == reason


def test_deeply_nested_json_is_refused_not_a_crash() -> None:
    data = b'{"type": "raw", "text": ' + b"[" * 30000 + b"]" * 30000 + b"}"
    with pytest.raises(BadDatagram) as err:
        parse_datagram(data)
    assert err.value.reason in ("not_json", "bad_field")


def test_largest_datagram_accepted() -> None:
    text = "y" * (MAX_DATAGRAM - 1)
    assert parse_datagram(text.encode()).fields["text"] == text


# ------------------------------------------------------------------ room signals
ROOM = "sax@conference.localhost"


def stanza(xml: str) -> etree._Element:
    """Parse a stanza written without its namespace, in the component namespace."""
    ns = " xmlns='jabber:component:accept'"
    return etree.fromstring(xml.replace("<presence", "<presence" + ns, 1).replace(
        "<message", "<message" + ns, 1))  # fmt: skip


def test_join_presence_asks_no_history_or_some() -> None:
    none = etree.tostring(room.join_presence(ROOM, "SAX", "sax@w.localhost/r")).decode()
    assert 'to="sax@conference.localhost/SAX"' in none and 'maxchars="0"' in none
    some = etree.tostring(room.join_presence(ROOM, "SAX", "sax@w.localhost/r", 7)).decode()
    assert 'maxstanzas="7"' in some


def test_classify_self_presence_error_kick_reflection_bounce() -> None:
    mu = "http://jabber.org/protocol/muc#user"
    joined = stanza(
        f"<presence from='{ROOM}/SAX' to='sax@w/r'><x xmlns='{mu}'><item role='participant'/>"
        "<status code='110'/></x></presence>"
    )
    assert room.classify(joined, ROOM, "SAX") == room.Joined("SAX")
    other = stanza(f"<presence from='{ROOM}/alice'><x xmlns='{mu}'><item/></x></presence>")
    assert room.classify(other, ROOM, "SAX") is None
    err = stanza(
        f"<presence from='{ROOM}/SAX' type='error'><error type='cancel'>"
        "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
    )
    assert room.classify(err, ROOM, "SAX") == room.JoinFailed("conflict")
    kicked = stanza(
        f"<presence from='{ROOM}/SAX' type='unavailable'><x xmlns='{mu}'><item/>"
        "<status code='110'/><status code='307'/></x></presence>"
    )
    assert room.classify(kicked, ROOM, "SAX") == room.Left(("110", "307"))
    echo = stanza(f"<message from='{ROOM}/SAX' type='groupchat' id='wb-1'><body>x</body></message>")
    assert room.classify(echo, ROOM, "SAX") == room.Reflected("wb-1")
    someone = stanza(
        f"<message from='{ROOM}/bob' type='groupchat' id='wb-1'><body>x</body></message>"
    )
    assert room.classify(someone, ROOM, "SAX") is None
    subject = stanza(f"<message from='{ROOM}' type='groupchat'><subject>s</subject></message>")
    assert room.classify(subject, ROOM, "SAX") == room.Subject()
    bounce = stanza(
        f"<message from='{ROOM}' type='error' id='wb-2'><error type='wait'>"
        "<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>slow down</text></error></message>"
    )
    assert room.classify(bounce, ROOM, "SAX") == room.Rejected("wb-2", "resource-constraint")
    elsewhere = stanza("<message from='other@conference.localhost/SAX' type='groupchat' id='x'/>")
    assert room.classify(elsewhere, ROOM, "SAX") is None


def test_groupchat_stanza_escapes_text() -> None:
    msg = room.groupchat(ROOM, "sax@w.localhost/r", "a < b & c", "wb-9")
    data = etree.tostring(msg)
    assert b"a &lt; b &amp; c" in data and b'type="groupchat"' in data and b'id="wb-9"' in data


# ------------------------------------------------------------------ pacing
def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(burst=3, rate=2.0, now=0.0)
    for _ in range(3):
        assert bucket.wait_time(0.0) == 0
        bucket.take()
    assert bucket.wait_time(0.0) == pytest.approx(0.5)
    assert bucket.wait_time(0.5) == 0


# ------------------------------------------------------------------ config
def test_config_toml_and_env(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "w.toml"
    path.write_text(
        '[xmpp]\nsecret = "s"\nnick = "SAX"\n[socket]\npath = "/tmp/x.sock"\nmode = "0620"\n',
        encoding="utf-8",
    )
    cfg = wconfig.load(
        str(path), {"WEBRIDGE_XMPP_RECONNECT_MAX": "5", "WEBRIDGE_SOCKET_GROUP": "www-data"}
    )
    assert cfg.xmpp.reconnect_max == 5.0
    assert cfg.socket.group == "www-data"
    assert cfg.socket_mode == 0o620
    assert cfg.jid == "sax@webridge.localhost/webridge"


def test_config_env_only_like_the_seed() -> None:
    cfg = wconfig.load(None, {"WEBRIDGE_XMPP_SECRET": "s", "WEBRIDGE_XMPP_ROOM": "r@c.example"})
    assert cfg.read_secret() == "s" and cfg.xmpp.room == "r@c.example"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "xmpp.secret"),
        ({"WEBRIDGE_XMPP_SECRET": "s", "WEBRIDGE_SOCKET_MODE": "0666"}, "socket.mode"),
        ({"WEBRIDGE_XMPP_SECRET": "s", "WEBRIDGE_SOCKET_MODE": "rw"}, "socket.mode"),
        ({"WEBRIDGE_XMPP_SECRET": "s", "WEBRIDGE_XMPP_PORT": "lots"}, "xmpp.port"),
        ({"WEBRIDGE_XMPP_SECRET": "s", "WEBRIDGE_XMPP_ROOM": "sax"}, "xmpp.room"),
        ({"WEBRIDGE_XMPP_SECRET": "s", "WEBRIDGE_XMPP_COLOUR": "red"}, "xmpp.colour"),
        ({"WEBRIDGE_XMPP_SECRET": "s", "WEBRIDGE_NOPE_X": "1"}, "WEBRIDGE_NOPE_X"),
    ],
)
def test_config_errors_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(wconfig.ConfigError, match=message):
        wconfig.load(None, env)


def test_example_config_lists_every_option() -> None:
    """webridge.toml.example loads and names every option of every section."""
    import dataclasses
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "bridges/webridge/webridge.toml.example"
    text = example.read_text(encoding="utf-8")
    cfg = wconfig.load(str(example), {})
    for section in dataclasses.fields(cfg):
        assert f"[{section.name}]" in text
        for option in dataclasses.fields(getattr(cfg, section.name)):
            assert f"\n{option.name} = " in text or f"\n# {option.name} = " in text, option.name


# ------------------------------------------------------------------ sans-IO rule
def test_pure_modules_import_no_io() -> None:
    """events, room and pacing stay sans-IO (DESIGN.md), checked in a fresh interpreter."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = (
        f"import sys; sys.path.insert(0, {str(root)!r})\n"
        "import bridges.webridge.events, bridges.webridge.room, bridges.webridge.pacing\n"
        "print(sorted(m for m in ('trio', 'socket', 'asyncio', 'ssl') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, cwd=root
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
