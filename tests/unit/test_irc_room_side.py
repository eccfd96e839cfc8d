"""Room side of the IRC bridge: join presence, stanza classification, dedup state, config."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from bridges.irc import config as cfgmod
from bridges.irc import muc
from bridges.irc.state import RecentIds, RoomState, load, save

ROOM = "sax@conference.localhost"
C = "jabber:component:accept"


def x(text: str) -> etree._Element:
    return etree.fromstring(text)


def test_join_presence_first_time_without_history_then_since() -> None:
    p = muc.join_presence(f"{ROOM}/IRC", "bridge@irc.localhost/irc", None, 200)
    h = p.find(".//{%s}history" % muc.MUC)
    assert h is not None and h.get("maxstanzas") == "0" and h.get("since") is None
    since = datetime(2026, 11, 28, 10, 0, 0, 123000, tzinfo=UTC)
    p = muc.join_presence(f"{ROOM}/IRC", "bridge@irc.localhost/irc", since, 200)
    h = p.find(".//{%s}history" % muc.MUC)
    assert h.get("since") == "2026-11-28T10:00:00.123Z" and h.get("maxstanzas") == "200"
    assert p.get("to") == f"{ROOM}/IRC" and p.get("from") == "bridge@irc.localhost/irc"


def test_classify_live_and_history_messages() -> None:
    live = x(
        f'<message xmlns="{C}" from="{ROOM}/alice" type="groupchat" id="m1">'
        f"<body>hi &lt;&amp;&gt;</body>"
        f'<stanza-id xmlns="urn:xmpp:sid:0" by="evil@x" id="forged"/>'
        f'<stanza-id xmlns="urn:xmpp:sid:0" by="{ROOM}" id="s1"/></message>'
    )
    ev = muc.classify(live, ROOM, "IRC", set())
    assert ev == muc.RoomMessage("alice", "hi <&>", "s1", None, "m1")
    hist = x(
        f'<message xmlns="{C}" from="{ROOM}/bob" type="groupchat"><body>old</body>'
        f'<delay xmlns="urn:xmpp:delay" from="{ROOM}" stamp="2026-11-28T09:00:00Z"/>'
        f'<stanza-id xmlns="urn:xmpp:sid:0" by="{ROOM}" id="s0"/></message>'
    )
    ev = muc.classify(hist, ROOM, "IRC", set())
    assert isinstance(ev, muc.RoomMessage)
    assert ev.stamp == datetime(2026, 11, 28, 9, tzinfo=UTC)


def test_classify_ignores_subject_other_rooms_and_bodyless() -> None:
    subj = f'<message xmlns="{C}" from="{ROOM}/x" type="groupchat"><subject>t</subject></message>'
    assert muc.classify(x(subj), ROOM, "IRC", set()) is None
    other = f'<message xmlns="{C}" from="o@c/x" type="groupchat"><body>b</body></message>'
    assert muc.classify(x(other), ROOM, "IRC", set()) is None
    state = f'<message xmlns="{C}" from="{ROOM}/x" type="groupchat"><active/></message>'
    assert muc.classify(x(state), ROOM, "IRC", set()) is None


def test_classify_does_not_relay_a_retraction_as_text() -> None:
    retract = (
        f'<message xmlns="{C}" from="{ROOM}/x" type="groupchat"><body>/me retracted a'
        ' previous message</body><retract xmlns="urn:xmpp:message-retract:1" id="s1"/></message>'
    )
    assert muc.classify(x(retract), ROOM, "IRC", set()) is None
    legacy = (
        f'<message xmlns="{C}" from="{ROOM}/x" type="groupchat"><body>gone</body>'
        '<apply-to xmlns="urn:xmpp:fasten:0" id="s1"><retract xmlns="urn:xmpp:message-retract:0"/>'
        "</apply-to></message>"
    )
    assert muc.classify(x(legacy), ROOM, "IRC", set()) is None
    plain = f'<message xmlns="{C}" from="{ROOM}/x" type="groupchat"><body>hi</body></message>'
    assert muc.classify(x(plain), ROOM, "IRC", set()) is not None


def status(*codes: str) -> str:
    return "".join(f'<status code="{c}"/>' for c in codes)


def test_classify_presences() -> None:
    u = "http://jabber.org/protocol/muc#user"
    own = f'<presence xmlns="{C}" from="{ROOM}/IRC"><x xmlns="{u}">{status("110")}</x></presence>'
    assert muc.classify(x(own), ROOM, "IRC", set()) == muc.SelfJoined("IRC")
    other = f'<presence xmlns="{C}" from="{ROOM}/alice"><x xmlns="{u}"/></presence>'
    assert muc.classify(x(other), ROOM, "IRC", set()) == muc.OccupantJoined("alice")
    gone = f'<presence xmlns="{C}" from="{ROOM}/alice" type="unavailable"/>'
    assert muc.classify(x(gone), ROOM, "IRC", set()) == muc.OccupantLeft("alice")
    kicked = (
        f'<presence xmlns="{C}" from="{ROOM}/IRC" type="unavailable">'
        f'<x xmlns="{u}">{status("110", "333")}</x></presence>'
    )
    assert muc.classify(x(kicked), ROOM, "IRC", set()) == muc.SelfRemoved({"110", "333"})
    refused = (
        f'<presence xmlns="{C}" from="{ROOM}/IRC" type="error"><error type="cancel">'
        f'<conflict xmlns="{muc.STANZAS}"/></error></presence>'
    )
    assert muc.classify(x(refused), ROOM, "IRC", set()) == muc.SelfRemoved(set(), "conflict")


def test_classify_self_ping_answers() -> None:
    ok = f'<iq xmlns="{C}" from="{ROOM}/IRC" type="result" id="p1"/>'
    assert muc.classify(x(ok), ROOM, "IRC", {"p1"}) == muc.PingResult("p1", True)
    assert muc.classify(x(ok), ROOM, "IRC", set()) is None

    def err(cond: str) -> etree._Element:
        return x(
            f'<iq xmlns="{C}" from="{ROOM}/IRC" type="error" id="p1"><error type="cancel">'
            f'<{cond} xmlns="{muc.STANZAS}"/></error></iq>'
        )

    assert muc.classify(err("not-acceptable"), ROOM, "IRC", {"p1"}).joined is False  # type: ignore[union-attr]
    assert muc.classify(err("service-unavailable"), ROOM, "IRC", {"p1"}).joined is True  # type: ignore[union-attr]
    ping = f'<iq xmlns="{C}" from="a@b/c" type="get" id="q"><ping xmlns="urn:xmpp:ping"/></iq>'
    ev = muc.classify(x(ping), ROOM, "IRC", set())
    assert isinstance(ev, muc.PingRequest)
    reply = muc.ping_reply(ev.iq)
    assert (reply.get("type"), reply.get("to"), reply.get("id")) == ("result", "a@b/c", "q")


def test_recent_ids_bounded_and_state_roundtrip(tmp_path: Path) -> None:
    ids = RecentIds(3)
    for i in "abcd":
        ids.add(i)
    assert "a" not in ids and ids.as_list() == ["b", "c", "d"]
    st = RoomState(size=3)
    assert st.since(60) is None
    t = datetime(2026, 11, 28, 10, tzinfo=UTC)
    st.record("s1", t)
    st.record("s2", t - timedelta(hours=1))  # an older history copy keeps the newest stamp
    assert st.seen("s1") and st.seen("s2") and not st.seen("s3") and not st.seen(None)
    assert st.since(60) == t - timedelta(seconds=60)
    # a long outage: the backlog is capped at max_age before now
    later = t + timedelta(days=1)
    assert st.since(60, later, 3600) == later - timedelta(seconds=3600)
    assert st.since(60, t + timedelta(seconds=10), 3600) == t - timedelta(seconds=60)
    assert st.since(60, later, 0) == t - timedelta(seconds=60)
    path = tmp_path / "state" / "irc.json"
    save(path, st)
    again = load(path, 3)
    assert again.last_stamp == t and again.seen("s1") and again.seen("s2")


def test_broken_state_file_is_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "irc.json"
    path.write_text("{not json")
    assert load(path, 10).last_stamp is None
    path.write_text("[1,2]")
    assert load(path, 10).last_stamp is None


def _example() -> dict:
    path = Path(__file__).resolve().parents[2] / "bridges/irc/irc.toml.example"
    return tomllib.loads(path.read_text(encoding="utf-8"))


def test_example_lists_every_option_with_its_default() -> None:
    example = _example()
    defaults = cfgmod.BridgeConfig()
    for section in ("xmpp", "irc", "relay"):
        obj = getattr(defaults, section)
        fields = {f for f in vars(obj)}
        assert set(example[section]) == fields, section
        for key in fields:
            assert example[section][key] == getattr(obj, key), f"{section}.{key}"


def minimal(tmp_path: Path) -> Path:
    p = tmp_path / "irc.toml"
    p.write_text(
        '[xmpp]\ndomain = "irc.localhost"\nsecret = "s"\nroom = "sax@conference.localhost"\n'
        '[irc]\nservers = ["irc.example:6697"]\nchannel = "#sax"\n'
    )
    return p


def test_config_env_overrides_and_validation(tmp_path: Path) -> None:
    path = minimal(tmp_path)
    cfg = cfgmod.load(path, {})
    assert cfg.server_list() == [("irc.example", 6697)]
    assert cfg.bot_jid == "bridge@irc.localhost/irc"
    env = {
        "IRCBRIDGE_IRC_SERVERS": "a.example:6667, [::1]:7000,b.example",
        "IRCBRIDGE_IRC_TLS": "false",
        "IRCBRIDGE_IRC_FLOOD_RATE": "2.5",
        "IRCBRIDGE_RELAY_JOINS_PARTS": "yes",
    }
    cfg = cfgmod.load(path, env)
    assert cfg.server_list() == [("a.example", 6667), ("::1", 7000), ("b.example", 6667)]
    assert cfg.irc.flood_rate == 2.5 and cfg.relay.joins_parts is True
    assert "secret=" not in repr(cfg.xmpp)  # secrets never reach a log line
    for bad_env, message in (
        ({"IRCBRIDGE_IRC_FLOOD_BURST": "0"}, "irc.flood_burst"),
        ({"IRCBRIDGE_IRC_CHANNEL": "sax"}, "irc.channel"),
        ({"IRCBRIDGE_XMPP_ROOM": "sax"}, "xmpp.room"),
        ({"IRCBRIDGE_IRC_SERVERS": "host:99999"}, "irc.servers"),
        ({"IRCBRIDGE_IRC_TLS": "maybe"}, "irc.tls"),
        ({"IRCBRIDGE_XMPP_SECRET": ""}, "xmpp.secret"),
    ):
        with pytest.raises(cfgmod.ConfigError, match=message):
            cfgmod.load(path, bad_env)
    (tmp_path / "bad.toml").write_text("[irc]\nnope = 1\n")
    with pytest.raises(cfgmod.ConfigError, match="unknown"):
        cfgmod.load(tmp_path / "bad.toml", {})
