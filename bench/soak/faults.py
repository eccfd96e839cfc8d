"""Faults on a schedule: server crashes and restarts, the database, the bridges, and
clients whose connections are cut mid-stanza or who stop reading."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from .clients import SoakClient
from .services import Stack

#: (fraction of the faulted part of the run, fault) — each once, spread out.
SCHEDULE = [
    (0.05, "cut_mid_stanza"),
    (0.15, "stop_reading"),
    (0.28, "xmppd_kill9"),
    (0.42, "pg_restart"),
    (0.55, "xmppd_sigterm"),
    (0.68, "ngircd_restart"),
    (0.78, "webridge_restart"),
    (0.90, "cut_mid_stanza"),
]


#: How long a client stops reading: longer than the soak server's c2s.send_timeout (30 s).
PAUSE_S = 75


class Injector:
    def __init__(
        self, stack: Stack, clients: list[SoakClient], on_restart: Callable[[], None]
    ) -> None:
        self.stack, self.clients, self.on_restart = stack, clients, on_restart
        self.log: list[dict] = []
        self._background: set[asyncio.Task[None]] = set()

    async def run(self, start: float, span: float, stop: asyncio.Event) -> None:
        for fraction, name in SCHEDULE:
            due = start + fraction * span
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, due - time.monotonic()))
                return
            except TimeoutError:
                pass
            t0 = time.monotonic()
            try:
                detail = await getattr(self, name)()
                ok = True
            except Exception as exc:  # a failed fault is reported, the run goes on
                detail, ok = f"{type(exc).__name__}: {exc}", False
            entry = {
                "fault": name,
                "at_s": round(t0 - start, 1),
                "ok": ok,
                "took_s": round(time.monotonic() - t0, 1),
                "detail": detail,
            }
            self.log.append(entry)
            print(f"[soak] fault {entry}", flush=True)

    async def _server(self, action: Callable[[], None]) -> str:
        await asyncio.to_thread(action)
        self.on_restart()
        return f"new pid {self.stack.xmppd_pid()}"

    async def xmppd_kill9(self) -> str:
        return await self._server(self.stack.xmppd_kill9)

    async def xmppd_sigterm(self) -> str:
        return await self._server(self.stack.xmppd_sigterm)

    async def pg_restart(self) -> str:
        await asyncio.to_thread(self.stack.pg_restart)
        return f"postgres pid {self.stack.pg.pid()}"

    async def ngircd_restart(self) -> str:
        if self.stack.ngircd is None:
            return "no ngircd"
        await asyncio.to_thread(self.stack.ngircd_restart)
        return "restarted"

    async def webridge_restart(self) -> str:
        if self.stack.wb is None:
            return "no webridge"
        await asyncio.to_thread(self.stack.webridge_restart)
        return "restarted"

    async def cut_mid_stanza(self) -> str:
        ready = [c for c in self.clients if c.ready.is_set()]
        victims = random.sample(ready, min(len(ready), max(3, len(ready) // 50)))
        kinds: dict[str, int] = {}
        for c in victims:
            if c.cut():
                kinds[c.kind] = kinds.get(c.kind, 0) + 1
        return f"cut {kinds}"

    async def stop_reading(self) -> str:
        """One TCP and one WebSocket client stop reading for longer than the server's
        send timeout, then read again (their connections should have been closed)."""
        picked = []
        for kind in ("tcp", "websocket"):
            ready = [c for c in self.clients if c.kind == kind and c.ready.is_set() and c.in_room]
            if ready:
                picked.append(random.choice(ready))
        links = [c.link for c in picked if c.link is not None]
        for link in links:
            link.pause_reading(True)

        async def later() -> None:
            await asyncio.sleep(PAUSE_S)
            for link in links:
                link.pause_reading(False)

        self._background.add(task := asyncio.create_task(later()))
        task.add_done_callback(self._background.discard)
        return f"clients {[c.idx for c in picked]} stop reading for {PAUSE_S} s"
