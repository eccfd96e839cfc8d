"""The SASL driver against the failed-login limits of a real :class:`Server`, in memory.

A fake backend that claims its account (as every real backend must) and then waits on
an event lets a test hold any number of logins in flight at once, with no sockets and
no timing: the driver must let at most ``auth_failures_per_minute`` of them reach the
secret check, and must give every place back when an exchange ends without a verdict.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.unit.stream_helpers import header, plain
from xmppd.auth.base import AuthContext, AuthError, Identity, ScramCredentials, claim_account
from xmppd.auth.internal import InternalAuthenticator
from xmppd.config import Config
from xmppd.server import Server
from xmppd.storage import AsyncDatabase, Database
from xmppd.stream.c2s import C2SStream
from xmppd.stream.scram import ScramSha256
from xmppd.transport.driver import C2SDriver
from xmppd.xml import ns

LIMIT = 10


class HeldBackend:
    """Claims ``username.lower()``, counts the secret checks, answers once released."""

    name = "held"

    def __init__(self) -> None:
        self.checked = 0
        self.go = trio.Event()

    def supports_scram(self) -> bool:
        return True

    async def check_password(self, username: str, password: str, ctx: AuthContext) -> Identity:
        claim_account(ctx, username.lower())
        self.checked += 1
        await self.go.wait()
        if password == "right":
            return Identity(localpart=username.lower())
        raise AuthError("not-authorized")

    async def scram_credentials(
        self, username: str, hash_name: str, ctx: AuthContext | None = None
    ) -> tuple[Identity, ScramCredentials] | None:
        claim_account(ctx, username.lower())
        return None  # unknown: the mechanism answers with a made-up salt

    async def user_exists(self, localpart: str) -> bool:
        return False

    async def aclose(self) -> None:
        return None


class Sink:
    def enqueue(self, data: bytes) -> bool:
        return True

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        return None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    config = Config()
    config.server.data_dir = str(tmp_path)
    config.limits.auth_failures_per_minute = LIMIT
    db = Database(config.database_url)
    db.upgrade()
    adb = AsyncDatabase(db)
    try:
        yield Server(config, db, InternalAuthenticator(adb), adb)
    finally:
        db.dispose()


def connection(server: Server, ip: str) -> tuple[C2SStream, C2SDriver]:
    # what the server really offers, minus the TLS rule (no TLS in memory)
    settings = dataclasses.replace(server.c2s_settings(ip, direct_tls=False), tls_required=False)
    stream = C2SStream(settings)
    driver = C2SDriver(server, stream, Sink(), ip, "tcp")
    stream.receive_data(header(to="localhost"))
    stream.data_to_send()
    return stream, driver


def sasl_answer(data: bytes) -> str:
    for name in ("temporary-auth-failure", "not-authorized", "aborted", "malformed-request"):
        if b"<%s/>" % name.encode() in data:
            return name
    if b"<success" in data:
        return "success"
    if b"<challenge" in data:
        return "challenge"
    raise AssertionError(f"no SASL answer in {data!r}")


async def login(server: Server, ip: str, user: str, password: str, answers: Counter[str]) -> None:
    stream, driver = connection(server, ip)
    await driver.handle(stream.receive_data(plain(user, password)))
    answers[sasl_answer(stream.data_to_send())] += 1


SCRAM_FIRST = b"<auth xmlns='%s' mechanism='SCRAM-SHA-256'>%s</auth>" % (
    ns.SASL.encode(),
    b"biwsbj1qYW5lLHI9ZnlrbytkMmxiYkZnT05Sdjlxa3hkYXdM",  # n,,n=jane,r=fyko+d2lbbFgONRv9qkxdawL
)


@pytest.mark.parametrize("same_address", [False, True])
async def test_concurrent_guesses_reach_the_backend_at_most_limit_times(
    server: Server, autojump_clock: trio.testing.MockClock, same_address: bool
) -> None:
    backend = HeldBackend()
    server.authenticator = backend
    answers: Counter[str] = Counter()
    async with trio.open_nursery() as nursery:
        for i in range(40):
            ip = "192.0.2.1" if same_address else f"198.51.100.{i}"
            user = f"user{i}" if same_address else "jane"
            nursery.start_soon(login, server, ip, user, "guess", answers)
        await trio.testing.wait_all_tasks_blocked()
        assert backend.checked == LIMIT  # the rest were refused before the backend
        backend.go.set()
    assert answers == {"not-authorized": LIMIT, "temporary-auth-failure": 40 - LIMIT}
    logins = server.logins
    assert logins.by_account.in_flight("jane") == 0
    assert logins.by_address.in_flight("192.0.2.1") == 0


async def test_right_password_while_limited_is_refused(
    server: Server, autojump_clock: trio.testing.MockClock
) -> None:
    backend = HeldBackend()
    backend.go.set()
    server.authenticator = backend
    answers: Counter[str] = Counter()
    for i in range(LIMIT):
        await login(server, f"198.51.100.{i}", "jane", "guess", answers)
    await login(server, "203.0.113.1", "JANE", "right", answers)
    assert answers == {"not-authorized": LIMIT, "temporary-auth-failure": 1}
    assert backend.checked == LIMIT


async def test_scram_exchange_holds_its_place_until_it_ends(server: Server) -> None:
    server.authenticator = HeldBackend()
    limiter = server.logins.by_account

    stream, driver = connection(server, "192.0.2.1")
    await driver.handle(stream.receive_data(SCRAM_FIRST))
    assert sasl_answer(stream.data_to_send()) == "challenge"
    assert limiter.in_flight("jane") == 1
    await driver.handle(stream.receive_data(b"<abort xmlns='%s'/>" % ns.SASL.encode()))
    assert sasl_answer(stream.data_to_send()) == "aborted"
    assert limiter.in_flight("jane") == 0
    assert "jane" not in limiter._failures  # no verdict, no failure

    await driver.handle(stream.receive_data(SCRAM_FIRST))
    assert limiter.in_flight("jane") == 1
    await driver.teardown()  # the connection went away mid-exchange
    assert limiter.in_flight("jane") == 0
    assert server.logins.by_address.in_flight("192.0.2.1") == 0


async def test_malformed_payload_counts_for_the_address_only(
    server: Server, autojump_clock: trio.testing.MockClock
) -> None:
    stream, driver = connection(server, "192.0.2.7")
    bad = b"<auth xmlns='%s' mechanism='PLAIN'>AGFsaWNl</auth>" % ns.SASL.encode()  # "\0alice"
    await driver.handle(stream.receive_data(bad))
    assert sasl_answer(stream.data_to_send()) == "malformed-request"
    assert len(server.logins.by_address._failures["192.0.2.7"]) == 1
    assert len(server.logins.by_account) == 0


def test_server_groups_ipv6_clients_by_the_configured_prefix(server: Server) -> None:
    for _ in range(LIMIT):
        server.record_login_failure("2001:db8:5:6::1")
    assert not server.login_allowed("2001:db8:5:6:ffff::2")  # same /64: same budget
    assert server.begin_login("2001:db8:5:6::3") is None
    assert server.login_allowed("2001:db8:5:7::1")
    assert server.logins.ipv6_prefix == server.config.limits.ipv6_prefix == 64


class NoScramBackend(HeldBackend):
    """Like phpBB: password hashes only, no SCRAM keys."""

    def supports_scram(self) -> bool:
        return False


def offered(server: Server) -> list[bytes]:
    """The mechanism names a new c2s stream of ``server`` puts in its features."""
    stream = C2SStream(server.c2s_settings("192.0.2.1", direct_tls=True))
    stream.receive_data(header(to="localhost"))
    return re.findall(rb"<mechanism>([^<]+)</mechanism>", stream.data_to_send())


def test_the_server_offers_scram_then_plain_with_scram_keys(server: Server) -> None:
    assert offered(server) == [b"SCRAM-SHA-256", b"SCRAM-SHA-1", b"PLAIN"]
    scram = server.c2s_settings("192.0.2.1", direct_tls=True).mechanisms["SCRAM-SHA-256"]()
    assert isinstance(scram, ScramSha256) and scram._domain == "localhost"


def test_the_server_offers_plain_only_without_scram_keys(server: Server) -> None:
    other = Server(server.config, server.database, NoScramBackend(), server.adb)
    assert offered(other) == [b"PLAIN"]
