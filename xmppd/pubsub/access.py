"""Who may read a PEP node (XEP-0060 §4.5 access models, as XEP-0163 §4 applies them).

``open``: any entity; ``presence``: the owner and contacts with a presence subscription to
the owner (the owner's roster item for them is ``from`` or ``both``); ``whitelist``: only
the owner (this server keeps no whitelist beyond the owner, which is what XEP-0223
private storage and XEP-0402 bookmarks ask for).
"""

from __future__ import annotations

from xmppd.pubsub.nodeconfig import pubsub_error
from xmppd.xml.errors import StanzaError

SUBSCRIBED = frozenset({"from", "both"})


def may_read(access_model: str, *, owner: bool, subscription: str | None) -> bool:
    """Whether a requester may see a node's items and notifications.

    ``subscription``: the owner's roster item for the requester (None: not in the roster).
    """
    if owner:
        return True
    if access_model == "open":
        return True
    if access_model == "presence":
        return subscription in SUBSCRIBED
    return False


def denied(access_model: str) -> StanzaError:
    """The §6.5.9 error for a requester :func:`may_read` refused."""
    if access_model == "presence":
        return pubsub_error("not-authorized", "presence-subscription-required")
    return pubsub_error("not-allowed", "closed-node")
