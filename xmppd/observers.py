"""What the router's message observers see (``Router.message_observers``): one value per
one-to-one message on its way, and the two calls an observer answers. Carbons (XEP-0280)
and the accounts' archive (XEP-0313) are observers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from lxml import etree

from xmppd.jid import JID
from xmppd.session import Session

log = logging.getLogger("xmppd.router")


@dataclass(slots=True)
class RoutedMessage:
    """One one-to-one ``<message/>`` on its way, as :class:`MessageObserver` s see it."""

    stanza: etree._Element
    #: the addressee as written (bare or full; the sender's own bare JID if no ``to``)
    to: JID
    #: the local session that sent it (None: a component, a room, the server)
    origin: Session | None
    #: the addressee is a local account (else another domain's service)
    local: bool
    #: the sessions that got the stanza itself (filled before :meth:`MessageObserver.routed`)
    reached: list[Session] = field(default_factory=list)
    #: kept for the addressee's next login (XEP-0160) instead of delivered
    offline: bool = False
    #: what one observer notes for another (e.g. the sender's archive id for carbons)
    notes: dict[str, Any] = field(default_factory=dict)
    #: the qualified names of the stanza's children as it arrived, read once for every
    #: observer's rules (body, hints, stanza-ids): each ``find`` walks the children again
    tags: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.tags = child_tags(self.stanza)


def child_tags(stanza: etree._Element) -> frozenset[str]:
    """The qualified names of ``stanza``'s child elements."""
    return frozenset([child.tag for child in stanza])


class MessageObserver(Protocol):
    """A service that sees each one-to-one message once (carbons, the accounts' archive).

    ``prepare`` runs before delivery and may change the stanza (a XEP-0359 stanza-id,
    removing a hint); it returns whether this observer has anything to do once the message
    is delivered (most messages need no carbon copy, no archive row, no push: the router
    then skips their ``routed``). ``routed`` runs after the stanza was delivered or stored
    offline, not when it was refused (blocked, no such user): a refused message was not
    received. Redelivery of an unacknowledged message (XEP-0198) does not run them again.
    """

    async def prepare(self, msg: RoutedMessage) -> bool: ...

    async def routed(self, msg: RoutedMessage) -> None: ...


async def prepare_all(
    observers: list[MessageObserver], msg: RoutedMessage
) -> list[MessageObserver]:
    """Every observer's ``prepare``; returns those that asked for ``routed``. A failing
    observer (say, its database is down) is logged and skipped: the message is still
    delivered, as without it."""
    again = []
    for observer in observers:
        try:
            if await observer.prepare(msg):
                again.append(observer)
        except Exception:
            _failed("prepare", observer)
    return again


async def routed_all(observers: list[MessageObserver], msg: RoutedMessage) -> None:
    """``routed`` of the observers :func:`prepare_all` returned; failures as there."""
    for observer in observers:
        try:
            await observer.routed(msg)
        except Exception:
            _failed("routed", observer)


def _failed(step: str, observer: MessageObserver) -> None:
    log.exception(
        "event=message_observer_failed step=%s observer=%s", step, type(observer).__name__
    )
