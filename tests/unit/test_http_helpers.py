"""Pure helpers of the HTTP port: CORS verdicts, static paths, cookies, history (the real
client behind proxies: test_http_proxy.py)."""

from __future__ import annotations

from pathlib import Path

from xmppd.http import static
from xmppd.http.cors import OriginPolicy


def test_origin_policy() -> None:
    policy = OriginPolicy(["https://forum.example"])
    assert policy.allowed(None, "http", "chat.example")
    assert policy.allowed("https://forum.example", "http", "chat.example")
    assert policy.allowed("HTTPS://Forum.Example", "http", "chat.example")
    assert not policy.allowed("https://evil.example", "http", "chat.example")
    assert policy.allowed("https://chat.example", "https", "chat.example")  # same origin
    assert not policy.allowed("http://chat.example", "https", "chat.example")
    assert OriginPolicy(["*"]).allowed("https://any.example", "http", "x")


def test_static_resolution_stays_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "dist"
    (root / "a").mkdir(parents=True)
    (root / "index.html").write_text("i")
    (root / "a" / "b.js").write_text("b")
    (tmp_path / "outside").write_text("o")
    (root / "link").symlink_to(tmp_path / "outside")
    assert static.resolve(root, "") == (root / "index.html").resolve()
    assert static.resolve(root, "a/b.js") == (root / "a" / "b.js").resolve()
    for bad in ("../outside", "a/../../outside", "link", ".hidden", "a\\b.js", "x\x00", "nope"):
        assert static.resolve(root, bad) is None, bad
    item = static.load(root / "a" / "b.js")
    assert item is not None and item.content_type.startswith("text/javascript")


def test_cookies_trusted_only_for_same_or_listed_origins() -> None:
    listed = OriginPolicy(["https://forum.example", "*"])
    assert listed.trusted_for_cookies("https://forum.example", "http", "chat.example")
    assert listed.trusted_for_cookies("https://chat.example", "https", "chat.example")
    # "*" lets any page read public data, never act with the member's cookies
    assert listed.allowed("https://evil.example", "https", "chat.example")
    assert not listed.trusted_for_cookies("https://evil.example", "https", "chat.example")
    assert not listed.trusted_for_cookies(None, "https", "chat.example")


def test_parse_cookies() -> None:
    from xmppd.http.app import parse_cookies

    assert parse_cookies('a=1; phpbb3_sid="abc" ; phpbb3_u=2; a=3; junk') == {
        "a": "1",
        "phpbb3_sid": "abc",
        "phpbb3_u": "2",
    }


def test_sasl_external_accepts_only_its_own_identity() -> None:
    from xmppd.auth.base import Identity
    from xmppd.stream.sasl import Challenge, ExternalMechanism, Failure, Success

    who = Identity("jane\\20doe")
    assert isinstance(ExternalMechanism(who, "example.com").start(None), Challenge)
    assert ExternalMechanism(who, "example.com").start(b"") == Success(who)
    assert ExternalMechanism(who, "example.com").start(b"jane\\20doe@example.com") == Success(who)
    refused = ExternalMechanism(who, "example.com").start(b"bob@example.com")
    assert isinstance(refused, Failure) and refused.condition == "invalid-authzid"


def test_history_feed_from_the_ring() -> None:
    import json
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from xmppd.http.history import HistoryFeed
    from xmppd.muc.history import HistoryEntry, HistoryRing

    ring = HistoryRing(3)
    open_room = {"value": True}
    room = SimpleNamespace(
        history=ring,
        jid_str="sax@conference.example.com",
        open_to_anyone=lambda: open_room["value"],
    )
    feed = HistoryFeed(SimpleNamespace(rooms={"sax": room, "staff": room}), ["sax"], 3)

    def add(n: int, body: str | None) -> None:
        xml = b'<message xmlns="jabber:client" type="groupchat">'
        xml += f"<body>{body}</body>".encode() if body is not None else b"<subject>s</subject>"
        stamp = datetime(2026, 1, 1, 0, 0, n, tzinfo=UTC)
        ring.append(HistoryEntry(f"id{n}", stamp, f"nick{n}", "a@example.com", xml + b"</message>"))

    for n, body in enumerate(["a &amp; b", None, "c"]):
        add(n, body)
    doc = json.loads(feed.answer("room=sax").body)
    assert [m["text"] for m in doc["messages"]] == ["a & b", "c"]  # no body: skipped
    assert doc["messages"][0]["timestamp"] == "2026-01-01T00:00:00.000Z"
    add(3, "d")  # the ring drops id0
    answer = feed.answer("room=sax&since=id2")
    assert [m["stanza_id"] for m in json.loads(answer.body)["messages"]] == ["id3"]
    assert json.loads(feed.answer("room=sax&since=id0").body)["gap"] is True
    assert feed.answer("room=staff").status == 404
    assert feed.answer("room=sax&limit=-1").status == 400
    assert json.loads(feed.answer("room=sax&limit=99").body)["messages"][-1]["text"] == "d"
    open_room["value"] = False  # an owner set a password (or made it members-only)
    assert feed.answer("room=sax").status == 404
    open_room["value"] = True
    oob = '<x xmlns="jabber:x:oob"><url> https://f.example/upload/x/a.png </url></x>'
    xml = f'<message xmlns="jabber:client"><body>look</body>{oob}</message>'.encode()
    stamp = datetime(2026, 1, 1, 0, 0, 9, tzinfo=UTC)
    ring.append(HistoryEntry("id9", stamp, "nick9", "a@example.com", xml))
    newest = json.loads(feed.answer("room=sax").body)["messages"][-1]
    assert newest["oob"] == "https://f.example/upload/x/a.png" and newest["text"] == "look"
    assert "oob" not in json.loads(feed.answer("room=sax").body)["messages"][0]
