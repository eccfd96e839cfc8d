"""The small services every XMPP server offers: disco, ping, version and time.

One call installs them all, so the server assembly does not need to know their tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Self

from lxml import etree

import xmppd
from xmppd.services.disco import DiscoService
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.services.ping import install_ping
from xmppd.services.presence import PresenceManager
from xmppd.services.time import TimeService
from xmppd.services.version import VersionService

if TYPE_CHECKING:
    from xmppd.router import Router


def install_basic_services(
    router: Router,
    *,
    server_name: str = "xmppd",
    version: str,
    os_name: str | None = None,
    clock: Callable[[], float] = time.time,
    extensions: Iterable[etree._Element] = (),
) -> DiscoService:
    """Install XEP-0030, XEP-0199, XEP-0092 and XEP-0202 handlers on ``router``.

    Returns the disco service so that the roster/presence service can later set
    ``presence_authorized`` (who may discover an account, XEP-0030 §8).
    """
    disco = DiscoService(name=server_name, extensions=extensions)
    disco.install(router)
    install_ping(router)
    VersionService(name=server_name, version=version, os_name=os_name).install(router)
    TimeService(clock).install(router)
    return disco


class BasicServices(Service):
    """Disco, ping, version and time of this server; disco asks the presence service who may
    discover an account (XEP-0030 §8)."""

    name = "basic"
    needs = (PresenceManager,)

    def __init__(self, disco: DiscoService) -> None:
        self.disco = disco

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self:
        disco = install_basic_services(ctx.router, version=xmppd.__version__, os_name=None)
        disco.presence_authorized = ctx.need(PresenceManager).presence_authorized
        return cls(disco)
