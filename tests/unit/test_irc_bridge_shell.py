"""The bridge's room logic in the trio shell, with a recording stand-in for the component
connection and trio's mock clock: self-ping, rejoin rules, de-duplication, overflow.

(The real component client, xmppd and ngircd are in tests/integration/test_irc_bridge.py;
these are the paths a real server will not produce on demand, such as a self-ping that is
never answered.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from lxml import etree

from bridges.irc import muc
from bridges.irc import state as st
from bridges.irc.bridge import IrcBridge, reconnect_delay
from bridges.irc.config import BridgeConfig
from bridges.irc.flood import BoundedQueue

ROOM = "sax@conference.localhost"
C = "jabber:component:accept"
U = "http://jabber.org/protocol/muc#user"


class FakeComponent:
    def __init__(self) -> None:
        self.connected = True
        self.sent: list[etree._Element] = []
        self.arrived = trio.Event()

    def send(self, stanza: etree._Element) -> None:
        self.sent.append(stanza)
        self.arrived.set()

    async def next_presence(self) -> etree._Element:
        while not any(etree.QName(s).localname == "presence" for s in self.sent):
            self.arrived = trio.Event()
            await self.arrived.wait()
        return self.take("presence")[0]

    async def send_now(self, stanza: etree._Element) -> None:
        self.sent.append(stanza)

    def take(self, kind: str) -> list[etree._Element]:
        out = [s for s in self.sent if etree.QName(s).localname == kind]
        self.sent = [s for s in self.sent if etree.QName(s).localname != kind]
        return out


def make_bridge(tmp_path: Path, **xmpp: object) -> tuple[IrcBridge, FakeComponent]:
    cfg = BridgeConfig()
    cfg.xmpp.domain, cfg.xmpp.secret, cfg.xmpp.room = "irc.localhost", "s", ROOM
    cfg.xmpp.state_file = str(tmp_path / "state.json")
    cfg.irc.servers, cfg.irc.channel = ["127.0.0.1:1"], "#sax"
    for k, v in xmpp.items():
        setattr(cfg.xmpp, k, v)
    bridge = IrcBridge(cfg)
    fake = FakeComponent()
    bridge.component = fake  # type: ignore[assignment]
    return bridge, fake


def x(text: str) -> etree._Element:
    return etree.fromstring(text)


def self_presence(*codes: str, kind: str = "") -> etree._Element:
    status = "".join(f'<status code="{c}"/>' for c in ("110", *codes))
    t = f' type="{kind}"' if kind else ""
    return x(f'<presence xmlns="{C}" from="{ROOM}/IRC"{t}><x xmlns="{U}">{status}</x></presence>')


def groupchat(nick: str, body: str, sid: str, stamp: str | None = None) -> etree._Element:
    delay = f'<delay xmlns="urn:xmpp:delay" stamp="{stamp}"/>' if stamp else ""
    return x(
        f'<message xmlns="{C}" from="{ROOM}/{nick}" type="groupchat"><body>{body}</body>'
        f'<stanza-id xmlns="urn:xmpp:sid:0" by="{ROOM}" id="{sid}"/>{delay}</message>'
    )


async def start(bridge: IrcBridge, nursery: trio.Nursery) -> None:
    await bridge._on_xmpp_connected()
    nursery.start_soon(bridge._room_sender)
    nursery.start_soon(bridge._room_watchdog)
    await bridge._on_stanza(self_presence())
    assert bridge.joined


async def test_unanswered_self_ping_rejoins(tmp_path: Path, autojump_clock: object) -> None:
    bridge, fake = make_bridge(tmp_path, self_ping_interval=10.0, self_ping_timeout=5.0)
    async with trio.open_nursery() as nursery:
        await start(bridge, nursery)
        assert len(fake.take("presence")) == 1
        await trio.sleep(11)
        (ping,) = fake.take("iq")
        assert ping.get("to") == f"{ROOM}/IRC" and ping.find("{urn:xmpp:ping}ping") is not None
        await trio.sleep(6)  # no answer
        (join,) = fake.take("presence")
        assert join.find("{%s}x" % muc.MUC) is not None
        assert not bridge.joined
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("condition", "rejoins"), [("not-acceptable", True), ("", False)])
async def test_self_ping_answers(
    tmp_path: Path, autojump_clock: object, condition: str, rejoins: bool
) -> None:
    bridge, fake = make_bridge(tmp_path, self_ping_interval=10.0, self_ping_timeout=5.0)
    async with trio.open_nursery() as nursery:
        await start(bridge, nursery)
        fake.take("presence")
        await trio.sleep(11)
        (ping,) = fake.take("iq")
        if condition:
            answer = (
                f'<iq xmlns="{C}" from="{ROOM}/IRC" type="error" id="{ping.get("id")}">'
                f'<error type="cancel"><{condition} xmlns="{muc.STANZAS}"/></error></iq>'
            )
        else:
            answer = f'<iq xmlns="{C}" from="{ROOM}/IRC" type="result" id="{ping.get("id")}"/>'
        await bridge._on_stanza(x(answer))
        await trio.sleep(2)
        assert len(fake.take("presence")) == (1 if rejoins else 0)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("codes", "delay"), [(("333",), 0.0), (("307",), 30.0), (("301",), None)])
async def test_removal_rules(
    tmp_path: Path, autojump_clock: object, codes: tuple[str, ...], delay: float | None
) -> None:
    bridge, fake = make_bridge(tmp_path, kick_rejoin_delay=30.0, self_ping_interval=1000.0)
    async with trio.open_nursery() as nursery:
        await start(bridge, nursery)
        fake.take("presence")
        t0 = trio.current_time()
        await bridge._on_stanza(self_presence(*codes, kind="unavailable"))
        assert not bridge.joined
        with trio.move_on_after(100):
            await fake.next_presence()
            assert delay is not None
            assert trio.current_time() - t0 == pytest.approx(delay, abs=0.2)
        if delay is None:
            assert trio.current_time() - t0 >= 100  # a ban is never fought
        nursery.cancel_scope.cancel()


async def test_history_copy_of_a_relayed_message_is_not_relayed_again(tmp_path: Path) -> None:
    bridge, fake = make_bridge(tmp_path)
    await bridge._on_xmpp_connected()
    await bridge._on_stanza(self_presence())
    await bridge._on_stanza(groupchat("alice", "one", "s1"))
    await bridge._on_stanza(groupchat("IRC", "&lt;bob&gt; echo", "s2"))  # our own
    # a rejoin: history repeats s1 and brings s3 said meanwhile
    await bridge._on_stanza(groupchat("alice", "one", "s1", "2026-11-28T10:00:00Z"))
    await bridge._on_stanza(groupchat("alice", "three", "s3", "2026-11-28T10:00:01Z"))
    assert list(bridge.irc_queue.items) == ["<alice> one", "<alice> three"]
    # the state survives a restart of the bridge: nothing repeats after it either
    st.save(bridge.state_path, bridge.state)
    again, _ = make_bridge(tmp_path)
    await again._on_stanza(self_presence())
    await again._on_stanza(groupchat("alice", "three", "s3", "2026-11-28T10:00:01Z"))
    assert len(again.irc_queue) == 0
    since = again.state.since(60)
    assert since is not None
    join = next(s for s in fake.sent if etree.QName(s).localname == "presence")
    assert join.find(".//{%s}history" % muc.MUC).get("maxstanzas") == "0"  # first join


async def test_irc_queue_overflow_is_counted_not_silent(tmp_path: Path) -> None:
    bridge, _ = make_bridge(tmp_path)
    bridge.irc_queue = BoundedQueue(3)
    bridge._to_irc([f"line {i}" for i in range(5)])
    assert len(bridge.irc_queue) == 3 and bridge.irc_queue.dropped == 2


def test_reconnect_delay_has_a_floor_and_jitter() -> None:
    delays = [reconnect_delay(20.0, 2.0, 300.0, n) for n in range(12) for _ in range(20)]
    assert min(delays) >= 20.0
    assert max(delays) <= 320.0
    assert len({round(d, 3) for d in delays}) > 100  # jittered, not lock-step
    assert max(reconnect_delay(20.0, 2.0, 300.0, 0) for _ in range(50)) <= 22.0


async def test_rooms_without_stanza_ids_dedup_by_content(tmp_path: Path) -> None:
    bridge, _ = make_bridge(tmp_path)
    await bridge._on_stanza(self_presence())

    def plain(body: str, stamp: str | None = None) -> etree._Element:
        delay = f'<delay xmlns="urn:xmpp:delay" stamp="{stamp}"/>' if stamp else ""
        return x(
            f'<message xmlns="{C}" from="{ROOM}/alice" type="groupchat">'
            f"<body>{body}</body>{delay}</message>"
        )

    await bridge._on_stanza(plain("no id here"))
    await bridge._on_stanza(plain("no id here", "2026-11-28T10:00:00Z"))  # rejoin history
    await bridge._on_stanza(plain("something new", "2026-11-28T10:00:01Z"))
    assert list(bridge.irc_queue.items) == ["<alice> no id here", "<alice> something new"]
