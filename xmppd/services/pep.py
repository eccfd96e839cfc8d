"""XEP-0163 Personal Eventing: a XEP-0060 pubsub service on every local account's bare JID.

The account is the service and the owner of its nodes. Its own resources publish (a
missing node is created, ``#auto-create``, with the ``publish-options`` as its
configuration, §7.1.5), retract, read, configure, purge and delete; anyone else may only
read, as the node's access model allows (:mod:`xmppd.pubsub.access`): ``publish`` to
another account is ``forbidden`` (XEP-0060 §7.1.3.1). Nodes and items are stored
(:class:`~xmppd.storage.pubsub.PubsubStore`), so they survive restarts.

Notifications (XEP-0163 §4) go to the resources that asked for them with a
``NODE+notify`` feature in their XEP-0115 caps (:mod:`xmppd.services.pep_caps` tracks
them): the owner's own, and those of contacts with a presence subscription to the owner
(unless the node is ``whitelist``). What a client can store is bounded by ``[pep]``
(:class:`~xmppd.pubsub.config.PepConfig`): payload bytes, nodes per account, items per
node (an absurd ``pubsub#max_items`` is clamped), node name and item id length.
"""

from __future__ import annotations

import copy
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Self

import trio
from lxml import etree

from xmppd.jid import JID, JIDError
from xmppd.pubsub import nodeconfig, wire
from xmppd.pubsub.access import denied, may_read
from xmppd.pubsub.config import PepConfig
from xmppd.pubsub.names import DATA, FEATURES, NODE_CONFIG, OWNER, PUBSUB
from xmppd.pubsub.nodeconfig import NodeConfig, pubsub_error
from xmppd.router import Router
from xmppd.services.basic import BasicServices
from xmppd.services.disco import Addressee, addressee_of, result_iq
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.services.pep_caps import CapsTracker
from xmppd.services.presence import PresenceManager
from xmppd.services.roster import OwnerLocks
from xmppd.session import Session
from xmppd.storage import AsyncDatabase
from xmppd.storage.pubsub import PubsubStore, StoredItem, TooManyNodes
from xmppd.xml.errors import StanzaError

log = logging.getLogger("xmppd.pep")

P = "{%s}" % PUBSUB
O = "{%s}" % OWNER  # noqa: E741 - the owner namespace, like P
SUBSCRIBED = ("from", "both")
#: ``await hook(owner, node, item_id, payload)`` after an account's own client published
#: an item (the payload as stored XML text) or retracted one (payload None); see
#: :meth:`PepService.on_publish`.
PublishHook = Callable[[str, str, str, str | None], Awaitable[None]]


def _unsupported(feature: str) -> StanzaError:
    """§7.1.3 ff.: ``feature-not-implemented`` + ``<unsupported feature='…'/>``."""
    err = pubsub_error("feature-not-implemented", "unsupported")
    assert err.app is not None
    err.app.set("feature", feature)
    return err


class PepService(Service):
    """Every account's PEP service: the pubsub iqs, disco of nodes, notifications."""

    name = "pep"
    needs = (PresenceManager, BasicServices)

    def __init__(
        self, router: Router, adb: AsyncDatabase, config: PepConfig, result_bytes: int = 262_144
    ) -> None:
        self.router = router
        self.adb = adb
        self.config = config
        #: Payload bytes one items result carries at most (the newest item always): a
        #: reader never gets more than ``limits.max_stanza_size`` at once (§6.5.7).
        self.result_bytes = result_bytes
        #: One write at a time per account: a read-check-write (auto-create, preconditions)
        #: must not interleave with another for the same nodes.
        self.locks = OwnerLocks()
        self.store = PubsubStore(adb.db)
        self.caps = CapsTracker(router, config.caps_cache_size, self.send_last_items)
        self.publish_hooks: list[PublishHook] = []

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self | None:
        """Answer pubsub iqs for accounts, advertise PEP in their disco#info, follow caps."""
        config = ctx.config.pep
        if not config.enabled:
            return None
        service = cls(ctx.router, ctx.adb, config, ctx.config.limits.max_stanza_size)
        for table in (ctx.router.account_iq, ctx.router.server_iq):
            table[P + "pubsub"] = service.handle_pubsub
            table[O + "pubsub"] = service.handle_owner
        disco = ctx.need(BasicServices).disco
        disco.account_identities.append(("pubsub", "pep"))
        disco.account_features = disco.account_features | {PUBSUB, *FEATURES}
        disco.account_nodes = service
        presence = ctx.need(PresenceManager)
        presence.watch(service.caps.presence_changed)
        presence.watch_subscriptions(service.subscription_changed)
        return service

    # ------------------------------------------------------------ public API
    def on_publish(self, hook: PublishHook) -> None:
        """Call ``hook`` after each item a client publishes to (or retracts from: payload
        None; a purge or delete: id "" too) its own account; not after
        :meth:`publish_for`/:meth:`retract_for`, so a conversion that publishes cannot loop
        (XEP-0398, XEP-0402 §5.3)."""
        self.publish_hooks.append(hook)

    async def publish_for(
        self,
        owner: str,
        node: str,
        item_id: str,
        payload: etree._Element,
        options: dict[str, Any] | None = None,
    ) -> None:
        """Publish ``payload`` on the account's behalf (XEP-0398 §3.2, XEP-0402 §5.3), with
        the limits, auto-create and notifications of a client's publish; ``options``
        configure a node this creates, and an existing node must have their
        ``access_model`` (``precondition-not-met`` otherwise: XEP-0411 §5 says convert
        private data only into a node only the user can read). A :class:`StanzaError` when
        refused."""
        publish = etree.Element(P + "publish", node=node)
        etree.SubElement(publish, P + "item", id=item_id).append(copy.deepcopy(payload))
        wanted = dict(options or {})
        async with self.locks.hold(owner):
            config = await self._config_of(owner, node)
            if config is not None:
                nodeconfig.check_preconditions(
                    config, {k: v for k, v in wanted.items() if k == "access_model"}
                )
                wanted = {}
            await self._publish(publish, [], owner, owner, tell=False, options=wanted)

    async def retract_for(self, owner: str, node: str, item_id: str) -> None:
        """Retract an item on the account's behalf (notifying as the node says); the
        :meth:`on_publish` hooks are not told. ``item-not-found`` when it is not there."""
        retract = etree.Element(P + "retract", node=node)
        etree.SubElement(retract, P + "item", id=item_id)
        async with self.locks.hold(owner):
            await self._retract(retract, owner, tell=False)

    async def items_of(self, owner: str, node: str) -> list[tuple[str, str]]:
        """Every item of an account's node as (id, payload XML), oldest first."""
        found = await self.adb.run(self.store.items, owner, node, None, None)
        return [(i.item_id, i.payload) for i in found or []]

    async def item(self, owner: str, node: str, item_id: str | None = None) -> str | None:
        """The stored payload of item ``item_id`` (or the newest item) of an account's
        node, as XML text; None when there is none."""
        ids = [item_id] if item_id is not None else None
        found = await self.adb.run(self.store.items, owner, node, ids, None if ids else 1)
        return found[-1].payload if found else None

    # ------------------------------------------------------------- addressing
    @staticmethod
    def _target(stanza: etree._Element, origin: Session | None) -> tuple[JID, JID | None, bool]:
        """(the account whose service is asked, the requester's bare JID, own account?)."""
        kind, account = addressee_of(stanza, origin)
        if kind is Addressee.SERVER or account is None:
            raise StanzaError("service-unavailable", "pubsub lives on each account (PEP)")
        requester = origin.bare if origin is not None else None
        if requester is None and stanza.get("from"):
            try:
                requester = JID.parse(stanza.get("from", "")).bare
            except JIDError:
                requester = None
        return account, requester, kind is Addressee.OWN

    def _node_name(self, el: etree._Element) -> str:
        node = el.get("node")
        if not node:
            raise pubsub_error("bad-request", "nodeid-required")
        if len(node) > self.config.max_node_length:
            raise StanzaError(
                "not-acceptable", f"a node name has at most {self.config.max_node_length} chars"
            )
        return node

    # -------------------------------------------------------------- pubsub ns
    async def handle_pubsub(
        self, stanza: etree._Element, origin: Session | None, router: Router
    ) -> etree._Element | None:
        """``<pubsub/>``: publish (and publish-options), retract, create (set), items (get)."""
        account, requester, own = self._target(stanza, origin)
        children = [c for c in stanza[0] if isinstance(c.tag, str)]
        if not children:
            raise StanzaError("bad-request", "an empty pubsub request")
        verb, kind = children[0], stanza.get("type")
        name = etree.QName(verb).localname if verb.tag.startswith(P) else ""
        if kind == "get" and name == "items":
            return await self._items(verb, account, requester, own)
        if kind == "set" and name in ("publish", "retract", "create") and not own:
            raise StanzaError("forbidden", "only the account itself publishes to its PEP")
        if kind == "set" and name in ("publish", "retract", "create"):
            async with self.locks.hold(str(account)):
                if name == "publish":
                    sender = stanza.get("from", "")
                    return await self._publish(verb, children[1:], str(account), sender)
                if name == "retract":
                    return await self._retract(verb, str(account))
                return await self._create(verb, children[1:], str(account))
        if name in ("subscribe", "unsubscribe", "options", "subscriptions", "affiliations"):
            raise _unsupported(name if name != "options" else "subscription-options")
        raise StanzaError("bad-request", "not a pubsub request this service knows")

    def _options(self, rest: list[etree._Element], tag: str) -> dict[str, object]:
        """The ``<publish-options/>`` or ``<configure/>`` form beside a publish or create."""
        for el in rest:
            if el.tag == P + tag:
                form = el.find("{%s}x" % DATA)
                if form is None:
                    return {}
                if tag == "publish-options":
                    return nodeconfig.parse_publish_options(form, self.config.max_items)
                return nodeconfig.parse_form(form, NODE_CONFIG, self.config.max_items, strict=False)
        return {}

    def _item(self, publish: etree._Element) -> StoredItem:
        """The one item of a publish, checked against XEP-0060 §7.1.3 and ``[pep]``."""
        items = publish.findall(P + "item")
        if len(items) != 1:
            raise pubsub_error("bad-request", "item-required" if not items else "invalid-payload")
        item = items[0]
        payload = [c for c in item if isinstance(c.tag, str)]
        if not payload:
            raise pubsub_error("bad-request", "payload-required")
        if len(payload) > 1:
            raise pubsub_error("bad-request", "invalid-payload", "one payload element per item")
        data = etree.tostring(payload[0], encoding="unicode", with_tail=False)
        if len(data.encode("utf-8")) > self.config.max_payload_bytes:
            raise pubsub_error(
                "not-acceptable",
                "payload-too-big",
                f"at most {self.config.max_payload_bytes} bytes",
            )
        item_id = item.get("id") or secrets.token_hex(10)
        if len(item_id) > self.config.max_item_id_length:
            raise StanzaError("not-acceptable", "the item id is too long")
        return StoredItem(item_id, data, datetime.now(UTC).replace(tzinfo=None))

    async def _config_of(self, owner: str, node: str) -> NodeConfig | None:
        stored = await self.adb.run(self.store.node, owner, node)
        return None if stored is None else NodeConfig.from_json(stored.config)

    async def _publish(
        self,
        publish: etree._Element,
        rest: list[etree._Element],
        owner: str,
        publisher: str,
        *,
        tell: bool = True,
        options: dict[str, Any] | None = None,
    ) -> etree._Element:
        """§7.1: store the item (creating the node), answer with its id, notify."""
        node = self._node_name(publish)
        item = self._item(publish)
        if options is None:
            options = self._options(rest, "publish-options")
        config = await self._config_of(owner, node)
        if config is not None:
            nodeconfig.check_preconditions(config, options)
        else:
            config = nodeconfig.apply(NodeConfig(), options)
        config = nodeconfig.apply(
            config, {"max_items": min(config.max_items, self.config.max_items)}
        )
        try:
            created = await self.adb.run(
                lambda: self.store.publish(
                    owner,
                    node,
                    item if config.persist_items else None,
                    publisher,
                    create_config=config.to_json(),
                    max_items=config.max_items,
                    max_nodes=self.config.max_nodes,
                )
            )
        except TooManyNodes:
            raise pubsub_error(
                "not-allowed", "max-nodes-exceeded", f"at most {self.config.max_nodes} nodes"
            ) from None
        log.info(
            "event=pep_published owner=%s node=%r item=%r created=%s bytes=%d",
            owner, node[:80], item.item_id[:80], created, len(item.payload),
            extra={"owner": owner, "node": node[:80]},
        )  # fmt: skip
        await self.notify(owner, node, config, wire.event_items(node, [_wire(item)]))
        await self._tell(tell, owner, node, item.item_id, item.payload)
        return _result(wire.publish_result(node, item.item_id))

    async def _tell(
        self, tell: bool, owner: str, node: str, item_id: str, payload: str | None
    ) -> None:
        for hook in self.publish_hooks if tell else ():
            try:
                await hook(owner, node, item_id, payload)
            except Exception:  # a hook's bug must not fail the client's request
                log.exception("event=pep_hook_failed owner=%s node=%r", owner, node[:80])

    async def _create(
        self, create: etree._Element, rest: list[etree._Element], owner: str
    ) -> etree._Element:
        """§8.1: an explicit create (with an optional configure form)."""
        node = self._node_name(create)
        config = nodeconfig.apply(NodeConfig(), self._options(rest, "configure"))
        if await self._config_of(owner, node) is not None:
            raise StanzaError("conflict", "the node exists")
        try:
            await self.adb.run(
                self.store.create, owner, node, config.to_json(), self.config.max_nodes
            )
        except TooManyNodes:
            raise pubsub_error("not-allowed", "max-nodes-exceeded") from None
        return result_iq()

    async def _retract(
        self, retract: etree._Element, owner: str, *, tell: bool = True
    ) -> etree._Element:
        """§7.2: remove one item; notify when the node's ``notify_retract`` (or the
        request's ``notify``) says so."""
        node = self._node_name(retract)
        items = retract.findall(P + "item")
        if len(items) != 1 or not items[0].get("id"):
            raise pubsub_error("bad-request", "item-required")
        item_id = items[0].get("id", "")
        config = await self._config_of(owner, node)
        if config is None:
            raise StanzaError("item-not-found", "no such node")
        if not await self.adb.run(self.store.retract, owner, node, item_id):
            raise StanzaError("item-not-found", "no such item")
        log.info("event=pep_retracted owner=%s node=%r item=%r", owner, node[:80], item_id[:80])
        if config.notify_retract or retract.get("notify") in ("1", "true"):
            await self.notify(owner, node, config, wire.event_retract(node, [item_id]))
        await self._tell(tell, owner, node, item_id, None)
        return result_iq()

    async def _items(
        self, request: etree._Element, account: JID, requester: JID | None, own: bool
    ) -> etree._Element:
        """§6.5: all items, the ones asked for by id, or the ``max_items`` newest."""
        node = self._node_name(request)
        owner = str(account)
        config = await self._config_of(owner, node)
        if config is None:
            raise StanzaError("item-not-found", "no such node")
        if not await self._may_read(config, account, requester, own):
            raise denied(config.access_model)
        ids = [i.get("id", "") for i in request.findall(P + "item") if i.get("id")]
        last = None
        if request.get("max_items") is not None:
            last = nodeconfig.parse_max_items(request.get("max_items", ""), self.config.max_items)
        found = await self.adb.run(self.store.items, owner, node, ids or None, last)
        return _result(wire.items_result(node, self._within_budget(found or [])))

    def _within_budget(self, found: list[StoredItem]) -> list[wire.Item]:
        """The newest items whose payloads fit :attr:`result_bytes` (at least one), in
        publish order: a node of many large items is read newest first, in part."""
        kept: list[wire.Item] = []
        total = 0
        for item in reversed(found):
            total += len(item.payload)
            if kept and total > self.result_bytes:
                break
            kept.append(_wire(item))
        return kept[::-1]

    async def _may_read(
        self, config: NodeConfig, account: JID, requester: JID | None, own: bool
    ) -> bool:
        if own:
            return True
        if requester is None or self.router.blocked_between(str(account), str(requester)):
            return False
        sub = None
        if config.access_model == "presence":
            item = await self.adb.run(self.adb.db.get_roster_item, str(account), str(requester))
            sub = item.subscription if item is not None else None
        return may_read(config.access_model, owner=False, subscription=sub)

    # --------------------------------------------------------------- owner ns
    async def handle_owner(
        self, stanza: etree._Element, origin: Session | None, router: Router
    ) -> etree._Element | None:
        """``<pubsub xmlns='…#owner'/>``: configure (get/set), default, delete, purge (§8)."""
        _account, _requester, own = self._target(stanza, origin)
        if not own:
            raise StanzaError("forbidden", "only the account itself owns its PEP nodes")
        owner = str(_account)
        children = [c for c in stanza[0] if isinstance(c.tag, str)]
        if not children or not children[0].tag.startswith(O):
            raise StanzaError("bad-request", "an empty pubsub#owner request")
        verb, kind = children[0], stanza.get("type")
        async with self.locks.hold(owner):
            return await self._owner_request(verb, kind, owner)

    async def _owner_request(
        self, verb: etree._Element, kind: str | None, owner: str
    ) -> etree._Element:
        name = etree.QName(verb).localname
        if name == "default" and kind == "get":
            return _owner_result("default", None, self._form(NodeConfig()))
        node = self._node_name(verb)
        config = await self._config_of(owner, node)
        if config is None:
            raise StanzaError("item-not-found", "no such node")
        if name == "configure" and kind == "get":
            return _owner_result("configure", node, self._form(config))
        if name == "configure" and kind == "set":
            return await self._configure(verb, owner, node, config)
        if name in ("delete", "purge") and kind == "set":
            done = self.store.delete if name == "delete" else self.store.purge
            await self.adb.run(done, owner, node)
            log.info("event=pep_%s owner=%s node=%r", name, owner, node[:80])
            await self.notify(owner, node, config, wire.event_node(name, node))
            await self._tell(True, owner, node, "", None)  # every item is gone
            return result_iq()
        raise StanzaError("bad-request", "not a pubsub#owner request this service knows")

    def _form(self, config: NodeConfig) -> etree._Element:
        return nodeconfig.config_form(config, self.config.max_items)

    async def _configure(
        self, verb: etree._Element, owner: str, node: str, config: NodeConfig
    ) -> etree._Element:
        """§8.2.4: a submitted form changes the node (a cancel changes nothing)."""
        form = verb.find("{%s}x" % DATA)
        if form is None:
            raise StanzaError("bad-request", "a configure set carries a data form")
        if form.get("type") == "cancel":
            return result_iq()
        changes = nodeconfig.parse_form(form, NODE_CONFIG, self.config.max_items, strict=False)
        new = nodeconfig.apply(config, changes)
        await self.adb.run(self.store.configure, owner, node, new.to_json(), new.max_items)
        log.info("event=pep_configured owner=%s node=%r", owner, node[:80])
        return result_iq()

    # ------------------------------------------------------------------ disco
    async def node_info(
        self, requester: JID | None, account: JID, node: str
    ) -> etree._Element | None:
        """XEP-0060 §5.3: a node the requester may read is a ``pubsub/leaf``."""
        config = await self._config_of(str(account), node)
        own = requester is not None and requester == account
        if config is None or not await self._may_read(config, account, requester, own):
            return None
        holder = etree.Element("holder")
        etree.SubElement(holder, "{http://jabber.org/protocol/disco#info}identity",
                         category="pubsub", type="leaf")  # fmt: skip
        etree.SubElement(holder, "{http://jabber.org/protocol/disco#info}feature", var=PUBSUB)
        return holder

    async def node_items(self, requester: JID | None, account: JID) -> list[etree._Element]:
        """XEP-0060 §5.2: the account's own nodes, to the account only."""
        if requester is None or requester != account:
            return []
        found = await self.adb.run(self.store.nodes, str(account))
        tag = "{http://jabber.org/protocol/disco#items}item"
        return [etree.Element(tag, jid=str(account), node=n.name) for n in found]

    # ---------------------------------------------------------- notifications
    async def notify(self, owner: str, node: str, config: NodeConfig, event: etree._Element) -> int:
        """XEP-0163 §4.3: ``event`` to each interested resource allowed to see the node:
        the owner's, and (unless whitelist) its presence subscribers'. Returns how many."""
        template = wire.event_message(owner, event)
        targets = [s for s in self.router.resources_of(owner) if s.available]
        if config.access_model != "whitelist":
            _version, roster = await self.adb.run(self.adb.db.get_roster, owner)
            for item in roster:
                if item.subscription in SUBSCRIBED and not self.router.blocked_between(
                    owner, item.jid
                ):
                    targets.extend(s for s in self.router.resources_of(item.jid) if s.available)
        sent = 0
        for session in targets:
            if node in self.caps.interests(session):
                session.send(wire.addressed(template, session.full_str))
                sent += 1
        return sent

    async def subscription_changed(self, owner: str, peer: str, shared: bool) -> None:
        """A new subscriber's interested resources get the owner's last items at once
        (``on_sub``, XEP-0060 §12.3), not only at their next available presence."""
        if not shared or self.router.blocked_between(owner, peer):
            return
        for session in self.router.resources_of(peer):
            nodes = self.caps.interests(session)
            if session.available and nodes:
                await self.send_last_items(session, nodes, [owner], on_sub=True)

    async def send_last_items(
        self,
        session: Session,
        nodes: frozenset[str],
        accounts: list[str] | None = None,
        *,
        on_sub: bool = False,
    ) -> None:
        """§4.3.2 / ``on_sub_and_presence``: a resource that became available (or newly
        told us its interests) gets the newest item of each node it wants, from its own
        account and from each contact whose presence it receives (or from ``accounts``,
        which share their presence with it), as access allows. ``on_sub``: for a new
        subscription, where nodes that send their last item ``on_sub`` count too."""
        if not nodes or not session.available:
            return
        if accounts is None:
            _version, roster = await self.adb.run(self.adb.db.get_roster, session.bare_str)
            accounts = [session.bare_str] + [
                i.jid
                for i in roster
                if i.subscription in ("to", "both")
                and self.router.is_local(JID.parse(i.jid))
                and not self.router.blocked_between(session.bare_str, i.jid)
            ]
        for account, stored, item in await self.adb.run(self.store.last_items, accounts):
            config = NodeConfig.from_json(stored.config)
            wanted = ("on_sub", "on_sub_and_presence") if on_sub else ("on_sub_and_presence",)
            if stored.name not in nodes or config.send_last_published_item not in wanted:
                continue
            # "to"/"both" on the contact's side is "from"/"both" on the owner's
            own = account == session.bare_str
            if not may_read(config.access_model, owner=own, subscription="from"):
                continue
            event = wire.event_items(stored.name, [_wire(item)])
            template = wire.event_message(account, event, delay=item.published)
            session.send(wire.addressed(template, session.full_str))

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Send last items once a resource's caps are resolved (see :class:`CapsTracker`)."""
        task_status.started()
        await self.caps.run()

    async def stop(self) -> None:
        self.caps.forget_all()


def _wire(item: StoredItem) -> wire.Item:
    return wire.Item(item.item_id, item.payload, item.published)


def _result(payload: etree._Element) -> etree._Element:
    reply = result_iq()
    reply.append(payload)
    return reply


def _owner_result(tag: str, node: str | None, form: etree._Element) -> etree._Element:
    reply = result_iq()
    pubsub = etree.SubElement(reply, O + "pubsub", nsmap={None: OWNER})
    holder = etree.SubElement(pubsub, O + tag)
    if node is not None:
        holder.set("node", node)
    holder.append(form)
    return reply
