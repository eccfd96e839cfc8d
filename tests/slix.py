"""slixmpp as the independent test client: connect, log in, and collect what arrives.

Integration tests are plain (sync) pytest functions that call :func:`run` with an
asyncio coroutine, because slixmpp lives on asyncio while the server runs in its own
process on trio.
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout  # noqa: F401 - re-exported for tests

from tests.xmppd_process import XmppdProcess

T = TypeVar("T")

warnings.filterwarnings("ignore", category=DeprecationWarning, module="slixmpp")


def run(factory: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """Run an asyncio scenario to completion with an overall timeout."""

    async def main() -> T:
        return await asyncio.wait_for(factory(), timeout)

    return asyncio.run(main())


class AuthFailed(Exception):
    pass


class Client(slixmpp.ClientXMPP):
    """A ClientXMPP that queues incoming messages and presences for assertions."""

    def __init__(self, jid: str, password: str, plugins: Iterable[str] = ()) -> None:
        super().__init__(jid, password)
        self.messages: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
        self.presences: asyncio.Queue[slixmpp.Presence] = asyncio.Queue()
        self.started = asyncio.get_event_loop().create_future()
        for plugin in ("xep_0030", "xep_0199", "xep_0092", "xep_0202", "xep_0203", *plugins):
            self.register_plugin(plugin)
        self.add_event_handler("session_start", self._on_start)
        self.add_event_handler("failed_all_auth", self._on_failed)
        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("presence", self.presences.put_nowait)
        self.add_event_handler("stream_error", self._on_stream_error)
        self.stream_errors: list[str] = []
        # Tests run on loopback against a self-signed certificate.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE

    def _on_start(self, _event: Any) -> None:
        if not self.started.done():
            self.started.set_result(True)

    def _on_failed(self, _event: Any) -> None:
        if not self.started.done():
            self.started.set_exception(AuthFailed(str(self.boundjid)))

    def _on_stream_error(self, error: Any) -> None:
        self.stream_errors.append(error["condition"])

    async def next_message(self, timeout: float = 5.0) -> slixmpp.Message:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def next_presence(
        self, timeout: float = 5.0, match: Callable[[slixmpp.Presence], bool] | None = None
    ) -> slixmpp.Presence:
        while True:
            pres = await asyncio.wait_for(self.presences.get(), timeout)
            if match is None or match(pres):
                return pres

    async def close(self) -> None:
        if self.is_connected():
            self.disconnect()
            try:
                await asyncio.wait_for(self.disconnected, 5)
            except TimeoutError:
                self.abort()


async def login(
    server: XmppdProcess,
    jid: str,
    password: str = "secret",
    *,
    direct_tls: bool = False,
    plugins: Iterable[str] = (),
    send_presence: bool = True,
    get_roster: bool = True,
    mechanism: str | None = None,
    timeout: float = 10.0,
) -> Client:
    """Connect and log in; raise :class:`AuthFailed` if the server refuses."""
    client = Client(jid, password, plugins)
    if mechanism:
        client.plugin["feature_mechanisms"].use_mech = mechanism
    client.plugin["feature_mechanisms"].unencrypted_plain = True
    client.plugin["feature_mechanisms"].unencrypted_scram = True
    if direct_tls:
        client.enable_direct_tls = True
        client.enable_starttls = False
        client.connect(host="127.0.0.1", port=server.tls_port)
    else:
        client.connect(host="127.0.0.1", port=server.port)
    try:
        await asyncio.wait_for(client.started, timeout)
    except BaseException:
        client.abort()
        raise
    if get_roster:
        await client.get_roster()
    if send_presence:
        client.send_presence()
    return client


async def login_with_caps(
    server: XmppdProcess, jid: str, plugins: Iterable[str], interests: Iterable[str] = ()
) -> Client:
    """Log in as a PEP client does: ``+notify`` for ``interests`` (and whatever the plugins
    add) in its XEP-0115 caps, announced with the initial presence."""
    client = await login(server, jid, plugins=plugins, send_presence=False)
    for namespace in interests:
        client.plugin["xep_0163"].add_interest(namespace)
    await client.plugin["xep_0115"].update_caps(broadcast=False)
    client.send_presence()
    return client


async def befriend(a: Client, b: Client) -> None:
    """Mutual presence subscriptions (RFC 6121 §3) between two logged-in clients."""
    for client in (a, b):
        client.add_event_handler(
            "presence_subscribe",
            lambda p, c=client: c.send_presence(pto=p["from"].bare, ptype="subscribed"),
        )
    a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
    await a.next_presence(match=lambda p: p["type"] == "subscribed", timeout=5)
    b.send_presence(pto=a.boundjid.bare, ptype="subscribe")
    await b.next_presence(match=lambda p: p["type"] == "subscribed", timeout=5)
