"""XEP-0357 push notifications: wake a phone whose client is not connected.

A client registers an app server (an "XMPP Push Service", any JID the router can reach:
usually a component) with ``<enable xmlns='urn:xmpp:push:0' jid=… node=…>`` and an
optional publish-options form (§5), and removes one node or all of that JID's with
``<disable/>`` (§6), each an iq set on its own account. Registrations are stored
(:class:`~xmppd.storage.push.PushStore`), at most ``[push] max_registrations`` per account.

While none of the account's resources has a live connection for a message — it is stored
offline, or reaches only sessions detached by XEP-0198 waiting for a resumption — each of
its registrations gets a pubsub publish from the account's bare JID (§7): a
``<notification/>`` with the ``urn:xmpp:push:summary`` form (``message-count``,
``last-message-sender``; ``last-message-body`` only with ``[push] include_body`` and a
registration whose publish-options ask for it with ``include-body``), and the client's
publish-options form as ``<publish-options/>``. The service is a router message observer
(one-to-one messages with a body), so it sees each message once.

Rate: while a registration's last publish is unanswered, another goes out only after
``[push] min_interval`` seconds; messages in between only raise the count. An iq error
from the app server disables that registration (§7.1 "Publish Errors": the server SHOULD
consider it disabled), except ``type='wait'``, which §7.1 lets a server treat as transient.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Self

import trio
from lxml import etree

from xmppd.jid import JID, JIDError
from xmppd.observers import RoutedMessage
from xmppd.router import Router
from xmppd.services.basic import BasicServices
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.services.push_config import PushConfig
from xmppd.session import Session
from xmppd.storage import AsyncDatabase
from xmppd.storage.models import JID_MAX, PUSH_NODE_MAX
from xmppd.storage.push import PushRegistration, PushStore
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

log = logging.getLogger("xmppd.push")

PUSH = "urn:xmpp:push:0"
SUMMARY = "urn:xmpp:push:summary"
PUBSUB = "http://jabber.org/protocol/pubsub"
PUBLISH_OPTIONS = PUBSUB + "#publish-options"
DATA = "jabber:x:data"
ENABLE = "{%s}enable" % PUSH
DISABLE = "{%s}disable" % PUSH
IQ = "{%s}iq" % ns.CLIENT
BODY = "{%s}body" % ns.CLIENT
X = "{%s}x" % DATA
FIELD = "{%s}field" % DATA
VALUE = "{%s}value" % DATA
#: Fields one publish-options form may have (with FORM_TYPE), values per field.
MAX_FIELDS = 16
MAX_VALUES = 4
#: Publishes waiting for the worker; more are dropped (logged), never block a message.
MAX_QUEUED = 1000


def parse_options(payload: etree._Element, max_bytes: int) -> tuple[str, bool]:
    """§5's optional publish-options form: (serialised, asks for the body) or the error.

    XEP-0004 §3.4: a submitted form names each field once, with a ``var``; its FORM_TYPE
    (XEP-0068) must be pubsub#publish-options. Anything else in ``<enable/>`` is refused.
    """
    forms = [child for child in payload if isinstance(child.tag, str)]
    if not forms:
        return "", False
    if len(forms) > 1 or forms[0].tag != X:
        raise StanzaError("bad-request", "enable carries at most one jabber:x:data form")
    form = forms[0]
    if form.get("type", "submit") != "submit":
        raise StanzaError("bad-request", "the publish-options form is a submitted form")
    fields = form.findall(FIELD)
    if len(fields) != len([c for c in form if isinstance(c.tag, str)]):
        raise StanzaError("bad-request", "the form may hold only fields")
    if len(fields) > MAX_FIELDS:
        raise StanzaError("not-acceptable", f"at most {MAX_FIELDS} fields")
    seen: dict[str, list[str]] = {}
    for f in fields:
        var = f.get("var") or ""
        values = [v.text or "" for v in f.findall(VALUE)]
        if not var or var in seen or len(values) > MAX_VALUES or len(values) != len(f):
            raise StanzaError("bad-request", "each field once, with a var and only values")
        seen[var] = values
    if seen.get("FORM_TYPE") != [PUBLISH_OPTIONS]:
        raise StanzaError("bad-request", f"the form's FORM_TYPE must be {PUBLISH_OPTIONS}")
    text = etree.tostring(form, encoding="unicode")
    if len(text.encode()) > max_bytes:
        raise StanzaError("not-acceptable", f"publish-options may be {max_bytes} bytes")
    return text, seen.get("include-body", ["false"])[0] in ("true", "1")


def parse_target(payload: etree._Element) -> tuple[str, str | None]:
    """The app server's JID (required, §5/§6) and node (None when absent)."""
    raw = payload.get("jid")
    if not raw:
        raise StanzaError("bad-request", "the 'jid' of the push service is required")
    try:
        jid = str(JID.parse(raw))
    except JIDError:
        raise StanzaError("jid-malformed", "the 'jid' is not a JID") from None
    if len(jid) > JID_MAX:
        raise StanzaError("not-acceptable", f"a JID may be {JID_MAX} characters")
    node = payload.get("node")
    if node is not None and (len(node) > PUSH_NODE_MAX or not node.isprintable()):
        raise StanzaError("not-acceptable", f"a node may be {PUSH_NODE_MAX} printable characters")
    return jid, node


def notification(
    reg: PushRegistration, iq_id: str, count: int, sender: str, body: str | None
) -> etree._Element:
    """§7's publish: the summary form, and the client's publish-options when it gave any."""
    iq = etree.Element(IQ, type="set", id=iq_id, nsmap={None: ns.CLIENT})
    iq.set("from", reg.owner)
    iq.set("to", reg.jid)
    pubsub = etree.SubElement(iq, "{%s}pubsub" % PUBSUB, nsmap={None: PUBSUB})
    publish = etree.SubElement(pubsub, "{%s}publish" % PUBSUB, node=reg.node)
    item = etree.SubElement(publish, "{%s}item" % PUBSUB)
    note = etree.SubElement(item, "{%s}notification" % PUSH, nsmap={None: PUSH})
    form = etree.SubElement(note, X, type="submit", nsmap={None: DATA})
    fields = [("FORM_TYPE", SUMMARY), ("message-count", str(count))]
    fields.append(("last-message-sender", sender))
    if body is not None:
        fields.append(("last-message-body", body))
    for var, value in fields:
        field = etree.SubElement(form, FIELD, var=var)
        etree.SubElement(field, VALUE).text = value
    if reg.options:
        options = etree.SubElement(pubsub, "{%s}publish-options" % PUBSUB)
        options.append(etree.fromstring(reg.options))
    return iq


@dataclass(slots=True)
class _State:
    """One registration's notifications in flight (in memory only)."""

    #: messages not yet in an acknowledged notification
    count: int = 0
    pending: str | None = None
    sent_at: float = 0.0
    #: the count the pending notification announced
    announced: int = 0


class PushService(Service):
    """The ``enable``/``disable`` iqs and the message observer that publishes."""

    name = "push"
    needs = (BasicServices,)

    def __init__(self, router: Router, adb: AsyncDatabase, config: PushConfig) -> None:
        self.router = router
        self.adb = adb
        self.config = config
        self.store = PushStore(adb.db)
        #: bare JID -> its registrations, oldest first
        self.registrations: dict[str, list[PushRegistration]] = {}
        self._state: dict[tuple[str, str, str], _State] = {}
        #: publishes and deletions for :meth:`run` (bounded: past it, one is dropped)
        self._jobs_in, self._jobs = trio.open_memory_channel[Callable[[], Awaitable[None]]](
            MAX_QUEUED
        )

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self | None:
        """Load the registrations (blocking, at start-up); answer the iqs; observe."""
        config = ctx.config.push
        if not config.enabled:
            return None
        service = cls(ctx.router, ctx.adb, config)
        service.registrations = service.store.load_all()
        for tag in (ENABLE, DISABLE):
            ctx.router.account_iq[tag] = service.handle_iq
        ctx.router.message_observers.append(service)
        disco = ctx.need(BasicServices).disco
        disco.account_features = disco.account_features | {PUSH}  # §4.1
        return service

    # ------------------------------------------------------------------ iqs
    async def handle_iq(
        self, stanza: etree._Element, origin: Session | None, router: Router
    ) -> etree._Element:
        """§5 enable / §6 disable, by a client of the account itself."""
        if origin is None:
            raise StanzaError("not-allowed", "only the account's own clients enable push")
        if stanza.get("type") != "set":
            raise StanzaError("bad-request", "enable and disable are sets")
        payload, owner = stanza[0], origin.bare_str
        jid, node = parse_target(payload)
        if payload.tag == ENABLE:
            options, body = parse_options(payload, self.config.max_options_bytes)
            await self._enable(PushRegistration(owner, jid, node or "", options))
            log.info("event=push_enabled owner=%s service=%s body=%s", owner, jid, body,
                     extra={"owner": owner, "service": jid})  # fmt: skip
        else:
            await self.adb.run(self.store.remove, owner, jid, node)
            kept = [
                r
                for r in self.registrations.get(owner, ())
                if not (r.jid == jid and (node is None or r.node == node))
            ]
            self._set(owner, kept)
            log.info("event=push_disabled owner=%s service=%s", owner, jid,
                     extra={"owner": owner, "service": jid})  # fmt: skip
        return etree.Element(IQ, type="result", nsmap={None: ns.CLIENT})

    async def _enable(self, reg: PushRegistration) -> None:
        have = [
            r
            for r in self.registrations.get(reg.owner, ())
            if (r.jid, r.node) != (reg.jid, reg.node)
        ]
        if len(have) >= self.config.max_registrations:
            raise StanzaError(
                "policy-violation",
                f"at most {self.config.max_registrations} push services per account",
            )
        await self.adb.run(self.store.put, reg)
        self._set(reg.owner, [*have, reg])

    def _set(self, owner: str, regs: list[PushRegistration]) -> None:
        if regs:
            self.registrations[owner] = regs
        else:
            self.registrations.pop(owner, None)

    def _disable(self, reg: PushRegistration, why: str) -> None:
        """§7.1: the app server refused: forget the registration (and store that)."""
        regs = [r for r in self.registrations.get(reg.owner, ()) if r != reg]
        self._set(reg.owner, regs)
        self._state.pop((reg.owner, reg.jid, reg.node), None)
        log.info("event=push_disabled_by_error owner=%s service=%s condition=%s", reg.owner,
                 reg.jid, why, extra={"owner": reg.owner, "service": reg.jid})  # fmt: skip

        self._queue(lambda: self.adb.run(self.store.remove, reg.owner, reg.jid, reg.node))

    # ------------------------------------------------------------ the worker
    def _queue(self, job: Callable[[], Awaitable[None]]) -> None:
        try:
            self._jobs_in.send_nowait(job)
        except trio.WouldBlock:
            log.warning("event=push_queue_full dropped=1")

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Publish (and forget refused registrations) off the message's path, in order."""
        task_status.started()
        async for job in self._jobs:
            try:
                await job()
            except Exception:
                log.exception("event=push_job_failed")

    # -------------------------------------------------------- MessageObserver
    async def prepare(self, msg: RoutedMessage) -> bool:
        """Only a message for an account with push registrations may need a notification."""
        return msg.local and bool(self.registrations.get(str(msg.to.bare)))

    async def routed(self, msg: RoutedMessage) -> None:
        """A message for an account none of whose resources has a connection for it."""
        if not msg.local:
            return
        regs = self.registrations.get(str(msg.to.bare))
        if not regs or msg.stanza.find(BODY) is None:
            return
        if not msg.offline and any(s.attached for s in msg.reached):
            return
        for reg in list(regs):
            self._notify(reg, msg.stanza)

    def _notify(self, reg: PushRegistration, stanza: etree._Element) -> None:
        key = (reg.owner, reg.jid, reg.node)
        state = self._state.setdefault(key, _State())
        state.count += 1
        now = trio.current_time()
        if state.pending is not None and now - state.sent_at < self.config.min_interval:
            return  # the last one is unanswered: this one only raises the count
        if state.pending is not None:
            self.router.awaiting.pop(state.pending, None)
        iq_id = "push-" + secrets.token_hex(8)
        body = None
        if self.config.include_body and _asks_for_body(reg):
            body = stanza.findtext(BODY)
        iq = notification(reg, iq_id, state.count, stanza.get("from") or "", body)
        state.pending, state.sent_at, state.announced = iq_id, now, state.count
        self.router.awaiting[iq_id] = (reg.jid, lambda reply: self._answered(reg, iq_id, reply))

        self._queue(lambda: self.router.route(iq))
        log.info("event=push_published owner=%s service=%s count=%d", reg.owner, reg.jid,
                 state.count, extra={"owner": reg.owner, "service": reg.jid})  # fmt: skip

    def _answered(self, reg: PushRegistration, iq_id: str, reply: etree._Element) -> None:
        state = self._state.get((reg.owner, reg.jid, reg.node))
        if state is not None and state.pending == iq_id:
            state.pending = None
            if reply.get("type") == "result":
                state.count = max(0, state.count - state.announced)
        if reply.get("type") != "error":
            return
        error = reply.find("{%s}error" % ns.CLIENT)
        if error is not None and error.get("type") == "wait":
            return  # §7.1: a transient error may leave it enabled
        condition = "undefined-condition"
        if error is not None:
            for child in error:
                if isinstance(child.tag, str) and child.tag.startswith("{%s}" % ns.STANZA_ERRORS):
                    condition = etree.QName(child).localname
                    break
        self._disable(reg, condition)


def _asks_for_body(reg: PushRegistration) -> bool:
    if not reg.options:
        return False
    form = etree.fromstring(reg.options)
    for f in form.iterfind(FIELD):
        if f.get("var") == "include-body":
            return (f.findtext(VALUE) or "") in ("true", "1")
    return False
