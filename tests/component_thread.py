"""A ``bridges.component.ComponentClient`` on its own trio loop in a background thread.

Integration tests drive slixmpp on asyncio in the test's thread; this runs the component
next to it. Stanzas the component receives land in ``received`` (a thread-safe queue);
``events`` records "connected" per handshake (after ``on_connected``) and "stopped".

    with ComponentThread(host=..., port=srv.component_port, domain=..., secret=...) as c:
        c.wait_connected()
        c.send(stanza)                     # ComponentClient.send, from this thread
        c.call(lambda: c.client.send_now(stanza))
        got = c.received.get(timeout=5)

``on_connected``, if given, is ``async def f(client)``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from lxml import etree

from bridges.component import ComponentClient


class ComponentThread:
    """A ComponentClient on its own trio loop; call into it with :meth:`call`."""

    def __init__(self, **kwargs: Any) -> None:
        self.received: queue.Queue[etree._Element] = queue.Queue()
        self.events: list[str] = []
        self.kwargs = kwargs
        self.client: ComponentClient | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._exit = trio.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        async def on_stanza(stanza: etree._Element) -> None:
            self.received.put(stanza)

        on_connected = self.kwargs.pop("on_connected", None)

        async def connected() -> None:
            self.events.append("connected")
            if on_connected is not None:
                await on_connected(self.client)

        self.client = ComponentClient(on_stanza=on_stanza, on_connected=connected, **self.kwargs)
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.client.run)
            self._ready.set()
        self.events.append("stopped")
        await self._exit.wait()  # calls from the test thread may still be running

    def __enter__(self) -> ComponentThread:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self.call(lambda: self.client.aclose())  # type: ignore[union-attr]
            self.sync(self._exit.set)
        self._thread.join(10)

    def call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        return trio.from_thread.run(fn, trio_token=self._token)

    def sync(self, fn: Callable[[], Any]) -> Any:
        return trio.from_thread.run_sync(fn, trio_token=self._token)

    def send(self, stanza: etree._Element) -> None:
        self.sync(lambda: self.client.send(stanza))  # type: ignore[union-attr]

    def wait_connected(self, timeout: float = 10.0) -> None:
        async def wait() -> None:
            with trio.fail_after(timeout):
                await self.client.wait_connected()  # type: ignore[union-attr]

        self.call(wait)

    def wait_disconnected(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.sync(lambda: self.client.connected):  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "still connected"
            time.sleep(0.02)
