"""The pure XEP-0048 <-> XEP-0402 casting (:mod:`xmppd.pubsub.bookmarks`)."""

from __future__ import annotations

from lxml import etree

from xmppd.pubsub import bookmarks
from xmppd.pubsub.bookmarks import Changes, Conference

S = "{storage:bookmarks}"
B = "{urn:xmpp:bookmarks:1}"


def test_storage_conferences_skip_missing_or_bad_jids_and_duplicates() -> None:
    storage = etree.fromstring(
        "<storage xmlns='storage:bookmarks'>"
        "<conference jid='Lobby@Conference.Example.org' name='Lobby' autojoin='1'>"
        "<nick>al</nick><password>pw</password></conference>"
        "<conference name='no jid'/>"
        "<conference jid='not a jid@@' name='bad'/>"
        "<conference jid='room@conference.example.org/res' name='full jid'/>"
        "<conference jid='lobby@conference.example.org' name='again'/>"
        "<conference jid='dev@conference.example.org' autojoin='false'/>"
        "<url name='site' url='https://example.org'/></storage>"
    )
    found, skipped = bookmarks.from_storage(storage)
    assert found == [
        Conference("lobby@conference.example.org", "Lobby", True, "al", "pw"),
        Conference("dev@conference.example.org", None, False, None, None),
    ]
    assert skipped == 3


def test_item_payload_round_trips_and_keeps_extensions() -> None:
    conf = Conference("lobby@conference.example.org", "Lobby", True, "al", None)
    old = etree.fromstring(
        "<conference xmlns='urn:xmpp:bookmarks:1' name='Old'>"
        "<extensions><state xmlns='urn:example'/></extensions></conference>"
    )
    payload = bookmarks.item_payload(conf, old)
    assert payload.get("autojoin") == "true" and payload.findtext(B + "nick") == "al"
    assert payload.find(B + "password") is None
    assert payload.find(f"{B}extensions/{{urn:example}}state") is not None
    assert bookmarks.from_item(conf.jid, payload) == conf
    assert bookmarks.from_item("not a jid@@", payload) is None
    assert bookmarks.from_item(conf.jid, etree.fromstring("<other xmlns='urn:x'/>")) is None


def test_to_storage_sets_jid_from_item_and_keeps_urls() -> None:
    previous = etree.fromstring(
        "<storage xmlns='storage:bookmarks'><conference jid='gone@c.example.org'/>"
        "<url name='site' url='https://example.org'/></storage>"
    )
    confs = [Conference("lobby@c.example.org", "Lobby", True, "al", None)]
    storage = bookmarks.to_storage(confs, previous)
    conferences = storage.findall(S + "conference")
    assert [c.get("jid") for c in conferences] == ["lobby@c.example.org"]
    assert conferences[0].get("autojoin") == "true" and conferences[0].findtext(S + "nick") == "al"
    assert [u.get("url") for u in storage.findall(S + "url")] == ["https://example.org"]
    assert bookmarks.from_storage(storage) == (confs, 0)


def test_diff_publishes_new_and_changed_retracts_gone_leaves_unchanged() -> None:
    same = Conference("a@c.example.org", "A")
    current = {
        same.jid: same,
        "b@c.example.org": Conference("b@c.example.org", "B"),
        "c@c.example.org": Conference("c@c.example.org"),
    }
    wanted = [
        same,
        Conference("b@c.example.org", "B", autojoin=True),
        Conference("d@c.example.org"),
    ]
    assert bookmarks.diff(current, wanted) == Changes(
        [Conference("b@c.example.org", "B", autojoin=True), Conference("d@c.example.org")],
        ["c@c.example.org"],
    )
