"""``/metrics`` of a real ``xmppd serve``: every figure moves with real traffic, parsed with
prometheus_client's own parser, and only listed client addresses get it.

Traffic: raw TCP clients (logins, chat, a public and a private room, a MAM query that
flushes the archive), a WebSocket and a BOSH session (one long poll held open), and a
XEP-0114 component that connects, exchanges a message each way and leaves.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree
from prometheus_client.parser import text_string_to_metric_families

from bridges.component import Backoff
from tests.bosh_client import Bosh
from tests.component_thread import ComponentThread
from tests.raw_client import RawClient
from tests.slix import run
from tests.ws_client import WsXmpp
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = pytest.mark.integration

Samples = dict[str, dict[frozenset[tuple[str, str]], float]]

BRIDGE = "bridge.localhost"
SECRET = "br1dge"
MUC = "http://jabber.org/protocol/muc"


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return out


def get(
    server: XmppdProcess,
    path: str = "/metrics",
    *,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.request(method, f"http://127.0.0.1:{server.http_port}{path}", headers=headers)


def scrape(server: XmppdProcess) -> Samples:
    response = get(server)
    assert response.status_code == 200, response.text
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get(name, {}).get(frozenset(labels.items()), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(samples.get(name, {}).values())


def wait_for(
    server: XmppdProcess, check: Callable[[Samples], bool], what: str, timeout: float = 10.0
) -> Samples:
    """Scrape until ``check`` holds: the only view of the server's state from outside."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(server)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, f"{what}: not seen in {timeout} s"
        time.sleep(0.05)


def auth(password: str, user: str = "alice") -> bytes:
    token = base64.b64encode(f"\0{user}\0{password}".encode())
    return b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + token + b"</auth>"


def join(client: RawClient, room: str, nick: str) -> bytes:
    client.buffer = b""
    client.send(
        f"<presence to='{room}@conference.localhost/{nick}'><x xmlns='{MUC}'/></presence>".encode()
    )
    return client.read_until(b'code="110"')


def say(client: RawClient, room: str, text: str) -> None:
    client.buffer = b""
    client.send(
        f"<message to='{room}@conference.localhost' type='groupchat'>"
        f"<body>{text}</body></message>".encode()
    )
    client.read_until(text.encode())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[XmppdProcess]:
    with running_server(
        tmp_path,
        users=("alice", "bob", "carol"),
        components=[{"domain": BRIDGE, "secret": SECRET}],
        # the archive waits in its queue until a MAM query flushes it (observable)
        muc={"archive_flush_interval": 120.0, "durable": False},  # batched: a queue to see
    ) as srv:
        yield srv


def test_counters_and_gauges_move_with_traffic(server: XmppdProcess) -> None:
    base = scrape(server)
    for name in ("xmppd_sessions", "xmppd_muc_occupants", "xmppd_component_connected"):
        assert total(base, name) == 0, name
    assert value(base, "process_resident_memory_bytes") > 0
    assert value(base, "xmppd_build_info", version="0.1.0") == 1

    # ---- logins: one failure, one success, both PLAIN over TCP
    bad = RawClient(server.port)
    bad.open_stream()
    bad.send(auth("wrong"))
    bad.read_until(b"<failure")
    bad.close()
    alice = RawClient(server.port)
    alice.login("alice", "secret", "desk")
    now = scrape(server)
    assert value(now, "xmppd_logins_total", result="success", mechanism="PLAIN") == 1
    assert value(now, "xmppd_logins_total", result="not-authorized", mechanism="PLAIN") == 1
    assert value(now, "xmppd_sessions", transport="tcp") == 1
    assert value(now, "xmppd_client_connections") > value(base, "xmppd_client_connections")
    assert total(now, "xmppd_db_query_seconds_count") > total(base, "xmppd_db_query_seconds_count")

    # ---- MUC: a public room by name, a private one as _other; the archive queue
    before = now
    join(alice, "sax", "Alice")
    say(alice, "sax", "hello sax")
    join(alice, "backroom", "Alice")  # created, locked: accept the default configuration
    alice.send(
        b"<iq type='set' id='cfg' to='backroom@conference.localhost'>"
        b"<query xmlns='http://jabber.org/protocol/muc#owner'>"
        b"<x xmlns='jabber:x:data' type='submit'/></query></iq>"
    )
    alice.read_until(b'id="cfg"')
    say(alice, "backroom", "hello back")
    now = scrape(server)
    assert value(now, "xmppd_muc_messages_total", room="sax") == 1
    assert value(now, "xmppd_muc_messages_total", room="_other") == 1
    assert not any("backroom" in str(labels) for labels in now["xmppd_muc_messages_total"])
    assert value(now, "xmppd_muc_occupants", room="sax") == 1
    assert value(now, "xmppd_muc_occupants", room="_other") == 1
    assert value(now, "xmppd_muc_rooms") == 2
    assert value(now, "xmppd_muc_archive_queue") >= 1  # the sax message, waiting
    # in: messages, presences, the form; out: echoes, room presences, the form's result
    for kind in ("message", "presence", "iq"):
        for name in ("xmppd_stanzas_received_total", "xmppd_stanzas_sent_total"):
            grown = value(now, name, kind=kind, peer="client")
            assert grown > value(before, name, kind=kind, peer="client"), (name, kind)

    # a MAM query flushes the archive first: queue empty, one batch written and timed
    alice.buffer = b""
    alice.send(
        b"<iq type='set' id='mam' to='sax@conference.localhost'>"
        b"<query xmlns='urn:xmpp:mam:2'/></iq>"
    )
    alice.read_until(b"<fin")
    after = scrape(server)
    assert value(after, "xmppd_muc_archive_queue") == 0
    assert value(after, "xmppd_muc_archive_writes_total") >= 1
    assert value(after, "xmppd_muc_archive_write_seconds_count") >= 1
    assert value(after, "xmppd_db_query_seconds_count", op="write_batch") >= 1
    assert value(after, "xmppd_db_query_seconds_count", op="query_archive") == 1

    # ---- WebSocket and BOSH sessions; a long poll held open
    async def browsers() -> Samples:
        ws = await WsXmpp.connect(f"ws://127.0.0.1:{server.http_port}/xmpp-websocket")
        bosh = Bosh(server.http_port)
        try:
            await ws.login("bob", "secret")
            await bosh.login("carol")
            poll = asyncio.create_task(bosh.send())  # held: nothing to say to carol
            seen = await asyncio.to_thread(
                wait_for,
                server,
                lambda s: value(s, "xmppd_bosh_held_requests") >= 1,
                "a held BOSH request",
            )
            await ws.send(
                "<message xmlns='jabber:client' to='carol@localhost/web' type='chat'>"
                "<body>wake up</body></message>"
            )
            await poll  # answered with the message
            await bosh.send(type="terminate")
            return seen
        finally:
            await ws.close()
            await bosh.aclose()

    seen = run(browsers, 60)
    assert value(seen, "xmppd_sessions", transport="websocket") == 1
    assert value(seen, "xmppd_sessions", transport="bosh") == 1
    assert value(seen, "xmppd_bosh_sessions") == 1
    assert value(seen, "xmppd_logins_total", result="success", mechanism="PLAIN") == 3

    # ---- a component: connected, a message each way, gone
    with ComponentThread(
        host="127.0.0.1",
        port=server.component_port,
        domain=BRIDGE,
        secret=SECRET,
        backoff=Backoff(initial=0.1, maximum=0.5, floor=0.05),
    ) as bridge:
        bridge.wait_connected()
        before = wait_for(
            server, lambda s: value(s, "xmppd_component_connected", domain=BRIDGE) == 1, "up"
        )
        assert value(before, "xmppd_component_connects_total", domain=BRIDGE) == 1
        msg = etree.Element("{jabber:client}message", nsmap={None: "jabber:client"})
        msg.set("from", f"irc@{BRIDGE}")
        msg.set("to", "alice@localhost/desk")
        etree.SubElement(msg, "{jabber:client}body").text = "from irc"
        alice.buffer = b""
        bridge.send(msg)
        alice.read_until(b"from irc")
        alice.send(f"<message to='irc@{BRIDGE}'><body>to irc</body></message>".encode())
        assert bridge.received.get(timeout=10).findtext("{*}body") == "to irc"
        now = scrape(server)
        for name in ("xmppd_stanzas_received_total", "xmppd_stanzas_sent_total"):
            assert value(now, name, kind="message", peer="component") == 1 + value(
                before, name, kind="message", peer="component"
            )
    wait_for(server, lambda s: value(s, "xmppd_component_connected", domain=BRIDGE) == 0, "down")

    alice.close()
    end = wait_for(server, lambda s: total(s, "xmppd_sessions") == 0, "every session ended")
    assert value(end, "xmppd_event_loop_lag_seconds_count") > value(
        base, "xmppd_event_loop_lag_seconds_count"
    )
    assert value(end, "process_cpu_seconds_total") > value(base, "process_cpu_seconds_total")


def test_only_listed_addresses_and_never_as_loopback_through_a_proxy(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        assert get(server).status_code == 200
        head = get(server, method="HEAD")
        assert head.status_code == 200 and head.content == b""
        assert get(server, method="POST").status_code == 405
        refused = get(server, source="127.0.0.2")  # loopback, but not listed
        assert refused.status_code == 403 and b"not served" in refused.content
        # forwarding headers from a peer that is no trusted proxy: never loopback
        assert get(server, headers={"x-forwarded-for": "127.0.0.1"}).status_code == 403
        assert get(server, headers={"forwarded": "for=127.0.0.1"}).status_code == 403


def test_behind_a_trusted_proxy_the_named_client_counts(tmp_path: Path) -> None:
    with running_server(
        tmp_path,
        http={"trusted_proxies": ["127.0.0.1"], "metrics_allow": ["127.0.0.2", "192.0.2.0/24"]},
    ) as server:
        via_proxy = {"x-forwarded-proto": "http"}
        assert get(server, headers={**via_proxy, "x-forwarded-for": "192.0.2.5"}).status_code == 200
        for named in ("198.51.100.1", "127.0.0.1", "127.0.0.2", "::1"):
            headers = {**via_proxy, "x-forwarded-for": named}
            assert get(server, headers=headers).status_code == 403, named
        # the proxy's own address, naming nobody, stands for an unknown client
        assert get(server).status_code == 403
        assert get(server, source="127.0.0.2").status_code == 200  # scraped directly


def test_metrics_below_the_path_prefix(tmp_path: Path) -> None:
    with running_server(tmp_path, http={"path_prefix": "/xmpp"}) as server:
        response = get(server, "/xmpp/metrics")
        assert response.status_code == 200
        assert "xmppd_sessions" in parse(response.text)
        assert get(server, "/metrics").status_code == 404
