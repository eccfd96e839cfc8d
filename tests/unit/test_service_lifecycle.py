"""The service lifecycle (xmppd.services.lifecycle): build order, needs, switched-off services."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import pytest
import trio

from xmppd.config import Config
from xmppd.router import Router
from xmppd.server import SERVICES
from xmppd.services.lifecycle import (
    Service,
    ServiceContext,
    ServiceError,
    build_order,
    build_services,
)
from xmppd.storage import AsyncDatabase, Database

EVENTS: list[str] = []


class NoAccounts:
    async def user_exists(self, localpart: str) -> bool:
        return False


class Store(Service):
    name = "store"

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self:
        EVENTS.append("build store")
        return cls()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        EVENTS.append("run store")
        task_status.started()

    async def stop(self) -> None:
        EVENTS.append("stop store")


class Off(Service):
    name = "off"

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self | None:
        return None


class User(Service):
    name = "user"
    needs = (Store, Off)

    def __init__(self, store: Store, off: Off | None) -> None:
        self.store = store
        self.off = off

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self:
        EVENTS.append("build user")
        return cls(ctx.need(Store), ctx.get(Off))

    async def stop(self) -> None:
        EVENTS.append("stop user")


class Loop(Service):
    name = "loop"


Loop.needs = (Loop,)


@pytest.fixture
def ctx(tmp_path: Path) -> ServiceContext:
    db = Database(f"sqlite:///{tmp_path / 'x.sqlite3'}")  # never opened: nothing queries
    return ServiceContext(Config(), Router("example.org", NoAccounts()), AsyncDatabase(db))


def test_needs_come_first_and_the_list_order_is_kept_otherwise() -> None:
    assert build_order([User, Off, Store]) == [Store, Off, User]
    assert build_order([Store, Off]) == [Store, Off]


def test_a_need_missing_from_the_list_or_a_circle_is_refused() -> None:
    with pytest.raises(ServiceError, match="'user' needs 'off'"):
        build_order([User, Store])
    with pytest.raises(ServiceError, match="loop -> loop"):
        build_order([Loop])


async def test_built_started_and_stopped_in_order(ctx: ServiceContext) -> None:
    EVENTS.clear()
    services = build_services([User, Store, Off], ctx)
    user = services.get(User)
    assert user is not None and user.store is services.get(Store) and user.off is None
    assert services.get(Off) is None  # switched off: left out
    with pytest.raises(ServiceError, match="'off' is needed"):
        ctx.need(Off)
    async with trio.open_nursery() as nursery:
        await services.start(nursery)
    await services.stop()
    assert EVENTS == ["build store", "build user", "run store", "stop user", "stop store"]


def test_the_servers_services_have_unique_names_and_build_in_some_order() -> None:
    assert len({kind.name for kind in SERVICES}) == len(SERVICES)
    assert set(build_order(SERVICES)) == set(SERVICES)
