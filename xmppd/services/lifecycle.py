"""One lifecycle for every server-side service: declare, build in order, run, stop.

A service is a class with a ``name``, the services it ``needs`` (classes, so a typo is an
import error and a lookup is typed) and a ``build`` classmethod that makes it from a
:class:`ServiceContext`: the configuration, the router, the database and the services
built before it. ``build`` registers the service's handlers on the router and may return
``None`` when the configuration switches the service off. :func:`build_services` builds a
list of service classes in dependency order (a need missing from the list, or a circle of
needs, is a :class:`ServiceError` at start-up). The server then starts each built
service's ``run`` in its nursery, in build order, and calls ``stop`` in reverse order when
it shuts down.

A service takes from the context what it uses (its configuration section, the router, the
services it needs) and keeps no reference to the server: services sit below the server
assembly in the import graph and never import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar

import trio

from xmppd.auth.base import Authenticator
from xmppd.config import Config
from xmppd.router import Router
from xmppd.storage import AsyncDatabase

S = TypeVar("S", bound="Service")


class ServiceError(Exception):
    """The list of services cannot be built (a missing need, a circle of needs)."""


class Service:
    """Base of every service: what it is called, what it needs, how it is made and run."""

    #: Names the service in logs and errors; unique among the services of one server.
    name: ClassVar[str]
    #: The services ``build`` looks up in the context; they are built first.
    needs: ClassVar[tuple[type[Service], ...]] = ()

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self | None:
        """Make the service and register it on ``ctx.router``; None: switched off."""
        raise NotImplementedError

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Background work, started in the server's nursery (none by default)."""
        task_status.started()

    async def stop(self) -> None:
        """Called once when the server shuts down, before its nursery is cancelled."""


@dataclass
class ServiceContext:
    """What a service is built from."""

    config: Config
    router: Router
    adb: AsyncDatabase
    authenticator: Authenticator | None = None
    #: The services built so far, by name.
    built: dict[str, Service] = field(default_factory=dict)

    def get(self, kind: type[S]) -> S | None:
        """The built ``kind``, or None if it is switched off (or not built yet)."""
        service = self.built.get(kind.name)
        assert service is None or isinstance(service, kind)
        return service

    def need(self, kind: type[S]) -> S:
        """The built ``kind``; a :class:`ServiceError` if it is switched off."""
        service = self.get(kind)
        if service is None:
            raise ServiceError(f"service {kind.name!r} is needed but not running")
        return service


class Services:
    """The built services of one server, in build order."""

    def __init__(self, built: dict[str, Service]) -> None:
        self._built = built

    def get(self, kind: type[S]) -> S | None:
        service = self._built.get(kind.name)
        assert service is None or isinstance(service, kind)
        return service

    def __iter__(self) -> Iterator[Service]:
        return iter(list(self._built.values()))

    async def start(self, nursery: trio.Nursery) -> None:
        """Start every service's ``run`` in ``nursery``, in build order."""
        for service in self:
            await nursery.start(service.run)

    async def stop(self) -> None:
        """Stop every service, last built first."""
        for service in reversed(list(self)):
            await service.stop()


def build_order(kinds: Iterable[type[Service]]) -> list[type[Service]]:
    """``kinds`` with every service after the services it needs (otherwise in list order)."""
    listed = list(kinds)
    order: list[type[Service]] = []
    visiting: list[type[Service]] = []

    def visit(kind: type[Service]) -> None:
        if kind in order:
            return
        if kind in visiting:
            circle = [k.name for k in visiting[visiting.index(kind) :]] + [kind.name]
            raise ServiceError("services need each other: " + " -> ".join(circle))
        visiting.append(kind)
        for need in kind.needs:
            if need not in listed:
                raise ServiceError(f"service {kind.name!r} needs {need.name!r}, not listed")
            visit(need)
        visiting.pop()
        order.append(kind)

    for kind in listed:
        visit(kind)
    return order


def build_services(kinds: Sequence[type[Service]], ctx: ServiceContext) -> Services:
    """Build ``kinds`` in dependency order into ``ctx.built``; switched-off ones are left out."""
    for kind in build_order(kinds):
        service = kind.build(ctx)
        if service is not None:
            ctx.built[kind.name] = service
    return Services(dict(ctx.built))
