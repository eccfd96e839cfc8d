"""RFC 6121 subscription states (Appendix A) as pure tables, and the one database hop
that applies a transition to a roster.

Every subscription stanza is processed once on the sender's roster ("outbound", Appendix
A.2) and once on the recipient's roster ("inbound", Appendix A.3): :func:`outbound_state`
and :func:`inbound_state`, so the transitions can be read (and tested) in one place.
Split out of :mod:`xmppd.services.presence`, which performs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from lxml import etree

from xmppd.services.roster import RosterLimits, check_item_size, roster_full
from xmppd.storage import RosterItem
from xmppd.storage.database import Database
from xmppd.xml import ns

PRIORITY = "{%s}priority" % ns.CLIENT
FROM_STATES = frozenset({"from", "both"})
TO_STATES = frozenset({"to", "both"})


@dataclass(frozen=True, slots=True)
class SubState:
    """One side's view of a subscription: RFC 6121 Appendix A's states plus pre-approval."""

    subscription: str = "none"
    ask_out: bool = False
    pending_in: bool = False
    approved: bool = False

    @property
    def has_to(self) -> bool:
        return self.subscription in TO_STATES

    @property
    def has_from(self) -> bool:
        return self.subscription in FROM_STATES

    def visible(self) -> tuple[str, bool, bool]:
        """What a roster item shows (§2.1.2); a change here needs a roster push."""
        return self.subscription, self.ask_out, self.approved


def _with(state: SubState, *, to: bool | None = None, from_: bool | None = None) -> SubState:
    has_to = state.has_to if to is None else to
    has_from = state.has_from if from_ is None else from_
    sub = {(False, False): "none", (True, False): "to", (False, True): "from", (True, True): "both"}
    return replace(state, subscription=sub[(has_to, has_from)])


def outbound_state(kind: str, state: SubState) -> SubState:
    """The sender's roster after it sends ``kind`` to the contact (Appendix A.2)."""
    if kind == "subscribe":
        return state if state.has_to else replace(state, ask_out=True)
    if kind == "unsubscribe":
        return replace(_with(state, to=False), ask_out=False)
    if kind == "subscribed":
        if state.pending_in:
            return replace(_with(state, from_=True), pending_in=False, approved=False)
        if state.has_from:
            return state
        return replace(state, approved=True)  # §3.4 pre-approval
    if kind == "unsubscribed":
        return replace(_with(state, from_=False), pending_in=False, approved=False)
    raise ValueError(kind)


def inbound_state(kind: str, state: SubState) -> SubState:
    """The recipient's roster after ``kind`` arrives from the contact (Appendix A.3)."""
    if kind == "subscribe":
        if state.has_from:
            return state  # auto-reply "subscribed" (§3.1.3)
        if state.approved:
            return replace(_with(state, from_=True), approved=False, pending_in=False)
        return replace(state, pending_in=True)
    if kind == "subscribed":
        if not state.ask_out:
            return state  # unsolicited: ignored (§3.1.6)
        return replace(_with(state, to=True), ask_out=False)
    if kind == "unsubscribe":
        return replace(_with(state, from_=False), pending_in=False)
    if kind == "unsubscribed":
        return replace(_with(state, to=False), ask_out=False)
    raise ValueError(kind)


def parse_priority(stanza: etree._Element) -> int:
    """``<priority/>`` as an int in -128..127; absent or invalid means 0 (RFC 6121 §4.7.2.3)."""
    el = stanza.find(PRIORITY)
    if el is None or el.text is None:
        return 0
    try:
        value = int(el.text.strip())
    except ValueError:
        return 0
    return value if -128 <= value <= 127 else 0


def apply_transition(
    db: Database,
    owner: str,
    peer: str,
    transition: Callable[[SubState], SubState],
    request_xml: str | None,
    limits: RosterLimits | None = None,
) -> tuple[SubState, SubState, RosterItem | None, int | None]:
    """Read, transition and write one roster's view of ``peer`` in a single thread hop.

    Returns the old and new state, plus the item and version when a push is due. A
    transition that would add ``peer`` to a roster at its ``limits`` changes nothing and
    raises the stanza error (only the user's own outbound stanzas add items).
    """
    item = db.get_roster_item(owner, peer)
    pending = any(from_jid == peer for from_jid, _ in db.get_pending_subscriptions(owner))
    if item is None:
        old = SubState(pending_in=pending)
    else:
        old = SubState(item.subscription, item.ask_out, pending, item.approved)
    new = transition(old)
    if item is None and limits is not None and new.visible() != old.visible():
        check_item_size(RosterItem(jid=peer), limits)
        if db.count_roster(owner) >= limits.max_items:
            raise roster_full(limits)
    if new.pending_in and request_xml is not None:
        db.add_pending_subscription(owner, peer, request_xml)
    elif old.pending_in and not new.pending_in:
        db.remove_pending_subscription(owner, peer)
    if new.visible() == old.visible():
        return old, new, None, None
    base = item if item is not None else RosterItem(jid=peer)
    updated = replace(
        base,
        subscription=new.subscription,
        ask_out=new.ask_out,
        pending_in=new.pending_in,
        approved=new.approved,
    )
    return old, new, updated, db.put_roster_item(owner, updated)
