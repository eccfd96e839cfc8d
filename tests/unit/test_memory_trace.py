"""The ``memory-trace`` admin command: tracemalloc switched on in a running server,
snapshots dumped to private files that ``bench/memory_cycles.py`` compares."""

from __future__ import annotations

import gc
import stat
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from xmppd.admin.commands import COMMANDS
from xmppd.admin.protocol import AdminError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _listing(directory: Path) -> list[Path]:
    return list(directory.iterdir())


async def _call(data_path: Path, **args: Any) -> Any:
    server = SimpleNamespace(config=SimpleNamespace(data_path=data_path))
    return await COMMANDS["memory-trace"](server, args)  # type: ignore[arg-type]


async def test_start_snapshot_stop(tmp_path: Path) -> None:
    assert not tracemalloc.is_tracing()
    try:
        assert (await _call(tmp_path, action="start", frames=3)).result == {"started": True}
        assert (await _call(tmp_path, action="start")).result == {"started": False}
        kept = [bytearray(1000) for _ in range(100)]  # something to see
        reply = await _call(tmp_path, action="snapshot")
        path = Path(reply.result["path"])
        assert path.parent == tmp_path and _mode(path) == 0o600
        assert reply.result["traced"] >= 100_000
        snapshot = tracemalloc.Snapshot.load(str(path))
        assert snapshot.traceback_limit == 3
        assert sum(s.size for s in snapshot.statistics("filename")) >= 100_000
        del kept
    finally:
        stopped = await _call(tmp_path, action="stop")
    assert stopped.result == {"stopped": True}
    assert not tracemalloc.is_tracing()
    assert (await _call(tmp_path, action="stop")).result == {"stopped": False}


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"action": "snapshot"}, "not-allowed"),  # tracing is off
        ({"action": "dump"}, "bad-request"),
        ({}, "bad-request"),
        ({"action": "start", "frames": 0}, "bad-request"),
        ({"action": "start", "frames": "5"}, "bad-request"),
        ({"action": "start", "frames": True}, "bad-request"),
    ],
)
async def test_bad_requests_change_nothing(tmp_path: Path, args: dict, code: str) -> None:
    with pytest.raises(AdminError) as info:
        await _call(tmp_path, **args)
    assert info.value.code == code
    assert not tracemalloc.is_tracing()
    assert _listing(tmp_path) == []


async def test_collect_frees_cyclic_garbage_without_tracing(tmp_path: Path) -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self

    gc.disable()  # the garbage must still be there when the command runs
    try:
        for _ in range(1000):
            Node()
        reply = await _call(tmp_path, action="collect")
    finally:
        gc.enable()
    assert reply.result["freed"] >= 1000
    assert reply.result["tracked"] > 0
    assert not tracemalloc.is_tracing()
    assert _listing(tmp_path) == []


class _Held:
    """A type of our own, so the counts do not depend on what else the process does."""


async def test_types_reports_growth_since_the_last_call(tmp_path: Path) -> None:
    await _call(tmp_path, action="types")
    holder = {"kept": [_Held() for _ in range(250)]}
    reply = await _call(tmp_path, action="types", top=100)
    name = f"{_Held.__module__}.{_Held.__qualname__}"
    mine = [t for t in reply.result["types"] if t["type"] == name]
    assert mine == [{"type": name, "count": 250, "change": 250}]
    # the holder's list shows as the referrer of every sampled object
    found = await _call(tmp_path, action="referrers", type=name, sample=3)
    lines = found.result["referrers"]
    sampled = [line for line in lines if not line.startswith("  <- ")]
    assert len(sampled) == 3
    assert set(sampled) <= {repr(obj)[:60] for obj in holder["kept"]}
    holders = [line for line in lines if line.startswith("  <- ")]
    assert holders == ["  <- builtins.list len=250 <- builtins.dict len=1"] * 3
    holder.clear()
    again = await _call(tmp_path, action="types", top=100)
    assert {"type": name, "count": 0, "change": -250} in again.result["types"]
    assert not tracemalloc.is_tracing()
    assert _listing(tmp_path) == []


@pytest.mark.parametrize(
    "args",
    [
        {"action": "types", "top": 0},
        {"action": "types", "top": "5"},
        {"action": "referrers"},  # no type
        {"action": "referrers", "type": "x.Y", "sample": 101},
    ],
)
async def test_bad_type_queries(tmp_path: Path, args: dict) -> None:
    with pytest.raises(AdminError) as info:
        await _call(tmp_path, **args)
    assert info.value.code == "bad-request"
