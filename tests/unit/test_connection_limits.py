"""Connection limits around the shared Admission: refusal logging, the descriptor budget,
what an HTTP connection counts as, and the HTTP timeouts given to hypercorn."""

from __future__ import annotations

import logging
import resource
import subprocess
import sys

import pytest

from xmppd.config import ConfigError, load_config
from xmppd.http.listen import hypercorn_config, silence_limit
from xmppd.http.proxy import ProxyPolicy
from xmppd.http.serving import SERVER_FULL, TOO_MANY_FROM_YOU, connection_counts_client
from xmppd.transport import fdlimit
from xmppd.transport.limits import make_admission
from xmppd.transport.refusals import RefusalLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_refusals_log_the_first_and_summarise_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    refusals = RefusalLog(60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="xmppd.admission"):
        for _ in range(1000):
            refusals.refused("component", "not-authorized", "127.0.0.1")
        refusals.refused("http", "per_address", "2001:db8::1")
        refusals.refused("http", "per_address", "2001:db8::2")  # the same /64
        assert len(caplog.records) == 2  # one line per key, not one per refusal
        clock.now = 61.0
        refusals.refused("component", "not-authorized", "127.0.0.1")  # a new window
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == (
        "event=connection_refused listener=component reason=not-authorized ip=127.0.0.1"
    )
    assert (
        "event=connection_refused_summary listener=component reason=not-authorized "
        "ip=127.0.0.1 more=999 seconds=61"
    ) in lines
    assert (
        "event=connection_refused_summary listener=http reason=per_address "
        "ip=2001:db8::/64 more=1 seconds=61"
    ) in lines
    assert lines[-1].startswith("event=connection_refused listener=component")
    assert refusals.totals[("component", "not-authorized")] == 1001


def test_refusal_keys_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    refusals = RefusalLog(60, max_keys=3, clock=Clock())
    with caplog.at_level(logging.WARNING, logger="xmppd.admission"):
        for i in range(100):
            refusals.refused("c2s", "per_address", f"192.0.2.{i}")
        refusals.flush()
    assert len(caplog.records) == 4  # three first lines and one summary for the rest
    assert "ip=other more=97" in caplog.records[-1].getMessage()


def test_connection_budget_leaves_room_below_the_descriptor_limit() -> None:
    assert fdlimit.connection_budget(1024) == 1024 - 128
    assert fdlimit.connection_budget(20_000) == 20_000 - 1250
    assert fdlimit.connection_budget(256) == 128
    assert fdlimit.connection_budget(100) == 50


def test_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    code = (
        "import resource; from xmppd.transport.fdlimit import raise_soft_limit; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, (64, {hard})); print(raise_soft_limit())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    assert int(out.stdout) == min(hard, 1 << 20)


def test_admission_total_comes_from_the_descriptor_limit_and_never_exceeds_it() -> None:
    budget = fdlimit.connection_budget(fdlimit.soft_limit())
    derived = make_admission(load_config(environ={}))
    assert derived.total == budget and derived.per_address == 64
    small = make_admission(load_config(environ={}, overrides={"limits": {"max_connections": 7}}))
    assert small.total == 7
    huge = {"limits": {"max_connections": budget + 1_000_000}}
    assert make_admission(load_config(environ={}, overrides=huge)).total == budget


def test_what_an_http_connection_counts_for() -> None:
    trusted = ProxyPolicy.of(["10.0.0.0/8"]).trusts
    direct = {"client": ("192.0.2.1", 4711), "http_version": "1.1"}
    assert connection_counts_client(direct, trusted)
    assert not connection_counts_client({**direct, "http_version": "2"}, trusted)
    assert not connection_counts_client({**direct, "client": ("10.1.2.3", 1)}, trusted)
    assert not connection_counts_client({**direct, "client": ("::ffff:10.1.2.3", 1)}, trusted)
    assert TOO_MANY_FROM_YOU.startswith(b"HTTP/1.1 429 ")
    assert SERVER_FULL.startswith(b"HTTP/1.1 503 ")
    for canned in (TOO_MANY_FROM_YOU, SERVER_FULL):
        head, _, body = canned.partition(b"\r\n\r\n")
        assert b"connection: close" in head and f"content-length: {len(body)}".encode() in head


def test_hypercorn_gets_the_http_timeouts() -> None:
    config = load_config(
        environ={}, overrides={"http": {"read_timeout": 7, "keep_alive_timeout": 40}}
    )

    class Stub:
        pass

    stub = Stub()
    stub.config = config  # type: ignore[attr-defined]
    hc = hypercorn_config(stub)  # type: ignore[arg-type]
    assert hc.keep_alive_timeout == 40
    assert hc.ssl_handshake_timeout == 7
    # the read backstop outlasts every legitimate silence: a held BOSH request, pings
    assert hc.read_timeout == silence_limit(config) == 120 + 60 + 7
    assert hc.read_timeout > config.bosh.max_wait
    no_pings = load_config(environ={}, overrides={"c2s": {"ping_interval": 0}})
    assert silence_limit(no_pings) is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"http": {"read_timeout": 0}},
        {"http": {"keep_alive_timeout": -1}},
        {"limits": {"max_connections": -1}},
        {"component_listener": {"max_connections": 0}},
        {"component_listener": {"max_connections_per_ip": 0}},
    ],
)
def test_new_limits_are_validated(overrides: dict[str, dict[str, int]]) -> None:
    with pytest.raises(ConfigError):
        load_config(environ={}, overrides=overrides)
