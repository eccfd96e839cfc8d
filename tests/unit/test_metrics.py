"""xmppd/metrics.py without sockets: who may scrape, one registry per server, the text
format prometheus_client's parser reads, the event-loop watcher, the stanza counts of a
bound session, and the Grafana dashboard against the metric names a server exports.

What moves with real traffic is in tests/integration/test_metrics_scrape.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.lowlevel
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.stream_helpers import header, plain
from xmppd.auth.internal import InternalAuthenticator
from xmppd.config import Config, ConfigError, validate
from xmppd.http.proxy import ClientInfo
from xmppd.metrics import OTHER_ROOMS, Metrics, may_scrape, parse_allow
from xmppd.server import Server
from xmppd.storage import AsyncDatabase, Database
from xmppd.stream.c2s import C2SStream
from xmppd.transport.driver import C2SDriver

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-xmppd.json"
LOOPBACK = parse_allow(["127.0.0.1", "::1"])


# ------------------------------------------------------------------ who may scrape
@pytest.mark.parametrize(
    ("client", "peer", "allowed"),
    [
        (ClientInfo("127.0.0.1", False), "127.0.0.1", True),
        (ClientInfo("::1", False), "::1", True),
        (ClientInfo("::ffff:127.0.0.1", False), "::ffff:127.0.0.1", True),  # dual-stack socket
        (ClientInfo("127.0.0.2", False), "127.0.0.2", False),  # loopback, but not listed
        (ClientInfo("192.0.2.7", False), "192.0.2.7", False),
        (ClientInfo("not an address", False), "x", False),
        # forwarding headers from an untrusted local peer: the peer, proxied, never loopback
        (ClientInfo("127.0.0.1", False, proxied=True), "127.0.0.1", False),
        # a trusted proxy that names the client as loopback: still not loopback
        (ClientInfo("127.0.0.1", False, proxied=True), "10.0.0.2", False),
        (ClientInfo("::1", True, proxied=True), "10.0.0.2", False),
    ],
)
def test_loopback_only_by_default_and_never_through_a_proxy(
    client: ClientInfo, peer: str, allowed: bool
) -> None:
    assert may_scrape(client, peer, LOOPBACK) is allowed


def test_listed_networks_and_proxied_clients() -> None:
    allow = parse_allow(["10.0.0.0/8", "2001:db8::/32", "192.0.2.9"])
    assert may_scrape(ClientInfo("10.20.30.40", False), "10.20.30.40", allow)
    assert may_scrape(ClientInfo("2001:db8::5", False), "2001:db8::5", allow)
    assert may_scrape(ClientInfo("192.0.2.9", False), "192.0.2.9", allow)
    assert not may_scrape(ClientInfo("192.0.2.10", False), "192.0.2.10", allow)
    assert not may_scrape(ClientInfo("127.0.0.1", False), "127.0.0.1", allow)
    # the address a trusted proxy named counts...
    assert may_scrape(ClientInfo("10.1.1.1", True, proxied=True), "192.0.2.200", allow)
    # ...the proxy's own, standing in for a client it did not name, does not
    assert not may_scrape(ClientInfo("10.0.0.2", False, proxied=True), "10.0.0.2", allow)
    assert not may_scrape(ClientInfo("10.0.0.2", False), "10.0.0.2", ())  # [] = nobody


def test_metrics_allow_is_validated() -> None:
    config = Config()
    assert config.http.metrics_allow == ["127.0.0.1", "::1"]
    config.http.metrics_allow = ["127.0.0.1", "10.0.0.0/8", "2001:db8::/48"]
    validate(config)
    config.http.metrics_allow = ["127.0.0.1", "localhost"]
    with pytest.raises(ConfigError, match=r"http\.metrics_allow: 'localhost'"):
        validate(config)


# ------------------------------------------------------------------ registries
@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    config = Config()
    config.server.data_dir = str(tmp_path)
    config.muc.public_history_rooms = ["Sax", "lobby"]
    db = Database(config.database_url)
    db.upgrade()
    adb = AsyncDatabase(db)
    try:
        yield Server(config, db, InternalAuthenticator(adb), adb)
    finally:
        db.dispose()


def families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> labels -> value, through prometheus_client's own parser."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            out.setdefault(sample.name, {})[labels] = sample.value
    return out


def test_each_server_has_its_own_registry(server: Server, tmp_path: Path) -> None:
    config = Config()
    config.server.data_dir = str(tmp_path / "two")
    db = Database(config.database_url)
    db.upgrade()
    try:
        other = Server(config, db, InternalAuthenticator(AsyncDatabase(db)))
        assert other.metrics.registry is not server.metrics.registry
        server.metrics.login("success", "PLAIN")
        mine = families(server.metrics.exposition()[0].decode())
        theirs = families(other.metrics.exposition()[0].decode())
        key = (("mechanism", "PLAIN"), ("result", "success"))
        assert mine["xmppd_logins_total"][key] == 1
        assert key not in theirs.get("xmppd_logins_total", {})
    finally:
        db.dispose()


def test_text_format_parses_and_names_public_rooms_only(server: Server) -> None:
    body, content_type = server.metrics.exposition()
    assert content_type.startswith("text/plain")
    parsed = families(body.decode())
    rooms = {dict(k)["room"] for k in parsed["xmppd_muc_messages_total"]}
    assert rooms == {"sax", "lobby", OTHER_ROOMS}
    assert {dict(k)["room"] for k in parsed["xmppd_muc_occupants"]} == rooms
    server.metrics.muc_messages("sax", 2)
    server.metrics.muc_messages("secret-plans", 1)
    parsed = families(server.metrics.exposition()[0].decode())
    assert parsed["xmppd_muc_messages_total"][(("room", "sax"),)] == 2
    assert parsed["xmppd_muc_messages_total"][(("room", OTHER_ROOMS),)] == 1
    assert parsed["process_resident_memory_bytes"][()] > 0
    assert not any(name.endswith("_created") for name in parsed)


def test_openmetrics_when_the_scraper_asks(server: Server) -> None:
    body, content_type = server.metrics.exposition(
        "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
    )
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


class Sink:
    def enqueue(self, data: bytes) -> bool:
        return True

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        return None


async def test_stanzas_a_bound_session_is_sent_are_the_servers(server: Server) -> None:
    server.database.create_user("alice", "secret")
    settings = dataclasses.replace(
        server.c2s_settings("192.0.2.1", direct_tls=False), tls_required=False
    )
    stream = C2SStream(settings)
    driver = C2SDriver(server, stream, Sink(), "127.0.0.1", "tcp")

    await driver.handle(stream.receive_data(header(to="localhost")))
    await driver.handle(stream.receive_data(plain("alice", "secret")))
    await driver.handle(stream.receive_data(header(to="localhost")))
    bind = b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
    await driver.handle(stream.receive_data(bind))
    session = driver.session
    assert session is not None and session.sent is server.metrics.client_sent
    session.send(b"<message to='alice@localhost/x'><body>1</body></message>")
    session.send(b"<iq type='result' id='1'/>")
    parsed = families(server.metrics.exposition()[0].decode())
    sent = parsed["xmppd_stanzas_sent_total"]
    assert sent[(("kind", "message"), ("peer", "client"))] == 1
    assert sent[(("kind", "iq"), ("peer", "client"))] == 1
    logins = parsed["xmppd_logins_total"]
    assert logins[(("mechanism", "PLAIN"), ("result", "success"))] == 1
    assert parsed["xmppd_sessions"][(("transport", "tcp"),)] == 1


async def test_logins_by_result_and_mechanism(server: Server) -> None:
    """A wrong password is its SASL condition; the limiter's refusal is rate_limited."""
    from xmppd.auth.ratelimit import LoginLimits

    server.logins = LoginLimits(1, 64)  # one failure a minute per address
    server.database.create_user("alice", "secret")
    settings = dataclasses.replace(
        server.c2s_settings("192.0.2.1", direct_tls=False), tls_required=False
    )
    for password in ("wrong", "secret"):
        stream = C2SStream(settings)
        driver = C2SDriver(server, stream, Sink(), "192.0.2.1", "tcp")
        await driver.handle(stream.receive_data(header(to="localhost")))
        await driver.handle(stream.receive_data(plain("alice", password)))
    logins = families(server.metrics.exposition()[0].decode())["xmppd_logins_total"]
    assert logins == {
        (("mechanism", "PLAIN"), ("result", "not-authorized")): 1,
        (("mechanism", "PLAIN"), ("result", "rate_limited")): 1,
    }


async def test_event_loop_lag_is_how_late_the_watcher_woke() -> None:
    metrics = Metrics()

    def count_and_sum() -> tuple[float, float]:
        parsed = families(metrics.exposition()[0].decode())
        return (
            parsed["xmppd_event_loop_lag_seconds_count"][()],
            parsed["xmppd_event_loop_lag_seconds_sum"][()],
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(metrics.watch_loop, 0.05)
        await trio.testing.wait_all_tasks_blocked()  # the watcher sleeps, due in 50 ms
        time.sleep(0.35)  # noqa: ASYNC251 - holding the loop is what is measured
        await trio.testing.wait_all_tasks_blocked()  # it woke, recorded, sleeps again
        nursery.cancel_scope.cancel()
    count, total = count_and_sum()
    assert count >= 1 and total >= 0.25, (count, total)


# ------------------------------------------------------------------ the dashboard
def exported_names(server: Server) -> set[str]:
    """Every sample name the server's registry can produce, children or not yet."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "info": ("_info",),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in server.metrics.registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def panels(dashboard: dict[str, object]) -> Iterator[dict[str, object]]:
    for panel in dashboard["panels"]:  # type: ignore[attr-defined]
        yield panel
        yield from panel.get("panels", [])


def test_dashboard_panels_query_metrics_the_server_exports(server: Server) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"]
    exported = exported_names(server)
    families_shown: set[str] = set()
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["datasource"]["uid"] == "${datasource}", panel
        targets = panel["targets"]
        assert targets, panel["title"]
        for target in targets:
            expr = target["expr"]
            # metric names: identifiers outside {} / [] / by (...) that call nothing
            bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b(by|without)\s*\([^)]*\)", "", expr)
            names = set(re.findall(r"(?<![\w$])([a-zA-Z_][a-zA-Z0-9_:]*)(?![\w(]|\s*\()", bare))
            assert names, (panel["title"], expr)
            missing = names - exported
            assert not missing, (panel["title"], missing)
            families_shown.update(names)
    # one panel or more for every metric family of the issue
    for wanted in (
        "xmppd_sessions",
        "xmppd_logins_total",
        "xmppd_stanzas_received_total",
        "xmppd_stanzas_sent_total",
        "xmppd_muc_messages_total",
        "xmppd_muc_occupants",
        "xmppd_muc_archive_queue",
        "xmppd_muc_archive_write_seconds_bucket",
        "xmppd_db_query_seconds_bucket",
        "xmppd_bosh_sessions",
        "xmppd_bosh_held_requests",
        "xmppd_component_connected",
        "xmppd_event_loop_lag_seconds_bucket",
        "process_resident_memory_bytes",
    ):
        assert wanted in families_shown, wanted
