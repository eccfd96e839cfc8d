"""The soak's client population: which transport, which source address, who is in the
room; and small helpers to wait for them and summarise latencies."""

from __future__ import annotations

import asyncio
import time

from .clients import Endpoint, SoakClient
from .ledger import Ledger

KINDS = ("tcp", "websocket", "bosh")


def source_address(i: int) -> str:
    """One loopback address per client, so per-address caps stay at their defaults."""
    return f"127.1.{i // 250}.{i % 250 + 1}"


def make_clients(
    n: int, endpoint: Endpoint, ledger: Ledger, room_share: float = 2 / 3
) -> list[SoakClient]:
    """Transports in turn (TCP, WebSocket, BOSH); ``room_share`` of each in the room."""
    clients = []
    for i in range(n):
        kind = KINDS[i % 3]
        in_room = room_share >= 1.0 or (i // 3) % 3 != 2
        clients.append(SoakClient(i, kind, in_room, endpoint, ledger, source_address(i)))
    return clients


async def wait_ready(clients: list[SoakClient], share: float, limit_s: float) -> float:
    """Wait until ``share`` of the clients are connected, in the room and caught up."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        ready = sum(c.ready.is_set() for c in clients) / max(1, len(clients))
        if ready >= share:
            return ready
        await asyncio.sleep(1)
    return sum(c.ready.is_set() for c in clients) / max(1, len(clients))


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]
