"""XEP-0313 message archive management for each account's one-to-one messages.

What is archived (Business Rules, "User Archives"): every message of type ``chat`` or ``normal``
with a ``<body/>`` that an account sends or receives (also one kept offline for it, once),
unless it carries the XEP-0334 ``<no-store/>`` or ``<no-permanent-store/>`` hint; a
``<store/>`` hint archives a chat/normal message without a body too. A message between two
local accounts is in both archives, each with its own id; a message to oneself once.
Private messages with a room occupant (XEP-0045 §7.5) are archived both ways: the room
delivers the ones it passes on through ``Router.deliver_observed``.
The account's preferences (XEP-0441, :mod:`xmppd.mam.prefs`; ``[mam] default`` until it sets
its own) decide per conversation partner; ``roster`` asks the account's roster.

XEP-0359: the copy delivered to (or stored for) the recipient carries
``<stanza-id xmlns='urn:xmpp:sid:0' by='user@domain' id='…'/>`` with the recipient's
archive id, the id a query returns. Any ``stanza-id`` claiming to be by the recipient
that arrived with the message is removed first, archived or not (XEP-0359 §3, rules 3
and 4: the entity a ``by`` names overrides such a claim, and a stanza has at most one
stanza-id per ``by``); stanza-ids by anyone else are left alone (rule 1).

Queries (§4) to the account's own bare JID (or no ``to``): form fields ``with`` (bare
JID: any resource; full JID: that resource), ``start``, ``end``, and (advertised as
``urn:xmpp:mam:2#extended``) ``before-id``, ``after-id``, ``ids``, ``<flip-page/>`` and
the archive's ``<metadata/>`` (§5); RSM ``max`` (clamped to
``[mam] max_page``), ``after``, ``before`` (empty: the last page); an unknown RSM id is
``item-not-found``, an unknown field ``feature-not-implemented`` (§4.1.5), a malformed
date ``bad-request``. Results come from the bare JID, then the iq result with ``<fin/>``
(``complete``, RSM ``first``/``last``). A page is also cut short (not ``complete``)
where its results would fill more than half the client's send queue
(:func:`~xmppd.mam.query.fit_page`). Another account's archive is ``forbidden``.

Writes are queued and written in batches by :meth:`AccountMamService.run` (at most
``batch_size`` rows, at least every ``flush_interval`` s); a query writes the queue first
so that what was delivered is findable. With ``durable`` (the default), a sender's XEP-0198
``<a/>`` waits until the rows of the messages it counts are committed (the writer is woken at
once; every row queued meanwhile goes in the same commit), so a crash never loses a message
the sender was told the server has: even one that only waited in a detached session's
memory is in the recipient's archive, where clients catch up after reconnecting.
The same task deletes messages older than ``retention_days`` once an hour. While the
database is down, at most :data:`MAX_QUEUED_ROWS` rows wait in memory; later ones are
dropped and logged.
Preference lists hold at most ``max_pref_jids`` JIDs each (``policy-violation`` beyond;
nothing is stored).
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Self

import trio
from lxml import etree

from xmppd.jid import JID, JIDError
from xmppd.mam.config import MamConfig
from xmppd.mam.prefs import PREFS, Prefs, parse_prefs, prefs_element
from xmppd.mam.query import (
    EXTENDED,
    MAM,
    QUERY,
    fit_page,
    parse_query,
    query_form,
    result_stanzas,
)
from xmppd.muc.history import format_stamp
from xmppd.observers import child_tags
from xmppd.router import RoutedMessage, Router
from xmppd.services.basic import BasicServices
from xmppd.services.carbons import SENT_ID_NOTE
from xmppd.services.disco import Addressee, addressee_of
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.session import Session
from xmppd.storage import AsyncDatabase
from xmppd.storage.account_mam import AccountArchiveStore, ArchiveRow
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

log = logging.getLogger("xmppd.mam")

SID = "urn:xmpp:sid:0"
HINTS = "urn:xmpp:hints"
STANZA_ID = "{%s}stanza-id" % SID
BODY = "{%s}body" % ns.CLIENT
IQ = "{%s}iq" % ns.CLIENT
NO_STORE = ("{%s}no-store" % HINTS, "{%s}no-permanent-store" % HINTS)
STORE = "{%s}store" % HINTS
METADATA = "{%s}metadata" % MAM
PURGE_EVERY = 3600.0
#: Rows waiting for the database at most (about 100 MB of small chats). Past it the
#: sender waits for the writer (backpressure: a database slower than the chat slows the
#: senders down, as a synchronous archive would); only when nothing is written for
#: ``max_commit_wait`` seconds (the database is down) are new rows dropped (counted, and
#: logged at most every :data:`DROP_LOG_EVERY` seconds) rather than the process growing
#: without bound; delivery itself goes on.
MAX_QUEUED_ROWS = 100_000
DROP_LOG_EVERY = 10.0
#: Notes this service leaves on a routed message: (owner, id, with, outgoing) rows.
ROWS_NOTE = "mam.rows"


def archivable(stanza: etree._Element, tags: frozenset[str] | None = None) -> bool:
    """Business Rules, "User Archives": chat or normal with a body (or a ``<store/>``
    hint), and no no-store hint. ``tags``: the stanza's child names, when known."""
    if (stanza.get("type") or "normal") not in ("chat", "normal"):
        return False
    if tags is None:
        tags = child_tags(stanza)
    if not tags.isdisjoint(NO_STORE):
        return False
    return BODY in tags or STORE in tags


def strip_forged(stanza: etree._Element, by: str) -> int:
    """Remove ``stanza-id`` elements claiming to be by ``by`` (XEP-0359 §3, rule 3); how many."""
    forged = [el for el in stanza.findall(STANZA_ID) if el.get("by") == by]
    for el in forged:
        stanza.remove(el)
    return len(forged)


def _with(raw: str) -> str:
    """A query's ``with``: a bare or full JID, normalised (``bad-request`` otherwise)."""
    try:
        return str(JID.parse(raw))
    except JIDError:
        raise StanzaError("bad-request", "'with' is not a JID") from None


class AccountMamService(Service):
    """Archives one-to-one messages (a router message observer) and answers queries."""

    name = "account_mam"
    needs = (BasicServices,)

    def __init__(
        self, router: Router, adb: AsyncDatabase, config: MamConfig, page_bytes: int = 524_288
    ) -> None:
        self.router = router
        self.adb = adb
        self.config = config
        #: bytes of results one query may queue for the client (half its send queue)
        self.page_bytes = page_bytes
        self.store = AccountArchiveStore(adb.db)
        #: bare JID -> preferences the account set (others use ``config.default``)
        self.prefs: dict[str, Prefs] = {}
        self._queue: list[ArchiveRow] = []
        self._wakeup = trio.Event()
        self._flush_lock = trio.Lock()
        #: the last stamp given: stamps never go back, so ids and stamps grow together
        self._last_stamp = datetime.min.replace(tzinfo=UTC)
        self.written = 0
        #: rows queued / committed since start: a row's number is its place in the queue
        #: order, and rows are committed in that order (a failed batch goes back in front)
        self.queued_seq = 0
        self.committed_seq = 0
        #: rows dropped because the queue was full (the database was down for long)
        self.dropped = 0
        self._dropped_logged_at = float("-inf")
        #: set by the writer after each committed batch, while a sender waits for room
        self._room: trio.Event | None = None
        #: the last write failed (the database is down): a full queue drops at once
        self._failing = False

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self | None:
        """Load the preferences and the newest stamp (blocking, at start-up); register."""
        config = ctx.config.mam
        if not config.enabled:
            return None
        queue = min(ctx.config.c2s.send_queue_bytes, ctx.config.bosh.max_buffer_bytes)
        service = cls(ctx.router, ctx.adb, config, page_bytes=queue // 2)
        service.prefs = service.store.load_prefs()
        newest = service.store.newest_stamp()
        if newest is not None:
            service._last_stamp = newest
        router = ctx.router
        for tag in (QUERY, PREFS, METADATA):
            router.account_iq[tag] = service.handle_iq
            router.server_iq[tag] = service.handle_iq
        router.message_observers.append(service)
        disco = ctx.need(BasicServices).disco
        # the account stamps stanza-ids on what it receives (XEP-0359 up to 0.5 had clients
        # look for this feature, §4 "Discovering Support"; they still do)
        disco.account_features = disco.account_features | {MAM, EXTENDED, SID}
        return service

    # ------------------------------------------------------------ MessageObserver
    async def prepare(self, msg: RoutedMessage) -> bool:
        """Stamp the recipient's archive id on what is delivered; note the rows to write
        (True when there are any)."""
        stanza = msg.stanza
        recipient = str(msg.to.bare) if msg.local else None
        if recipient is not None and STANZA_ID in msg.tags:
            strip_forged(stanza, recipient)
        if not archivable(stanza, msg.tags):
            return False
        if msg.origin is not None:
            sender = msg.origin.jid  # the stream stamped 'from' with it
        else:
            try:
                sender = JID.parse(stanza.get("from") or "")
            except JIDError:
                return False
        rows: list[tuple[str, str, JID, bool]] = []
        if recipient is not None and await self._wants(recipient, str(sender.bare)):
            stanza_id = self._new_id()
            sid = etree.SubElement(stanza, STANZA_ID, nsmap={None: SID})
            sid.set("id", stanza_id)
            sid.set("by", recipient)
            rows.append((recipient, stanza_id, sender, False))
        origin = msg.origin
        if origin is not None and origin.bare_str != recipient:
            owner = origin.bare_str
            if await self._wants(owner, str(msg.to.bare)):
                stanza_id = self._new_id()
                msg.notes[SENT_ID_NOTE] = stanza_id
                rows.append((owner, stanza_id, msg.to, True))
        if rows:
            msg.notes[ROWS_NOTE] = rows
        return bool(rows)

    async def routed(self, msg: RoutedMessage) -> None:
        """The message was delivered or stored offline: queue its archive rows."""
        rows = msg.notes.get(ROWS_NOTE)
        if not rows:
            return
        if len(self._queue) >= MAX_QUEUED_ROWS and not await self._wait_for_room():
            self._drop(len(rows))
            return
        stamp = self._stamp()
        xml = etree.tostring(msg.stanza, encoding="unicode")
        for owner, stanza_id, other, outgoing in rows:
            with_bare, resource = str(other.bare), other.resource or ""
            row = ArchiveRow(owner, stanza_id, with_bare, resource, outgoing, stamp, xml)
            self._queue.append(row)
        self.queued_seq += len(rows)
        origin = msg.origin
        if self.config.durable and origin is not None and origin.sm is not None:
            # the sender's next <a/> waits for these rows (the newest wait covers older)
            barriers = origin.ack_barriers
            if barriers is None:
                barriers = origin.ack_barriers = {}
            barriers[self] = partial(self.committed, self.queued_seq)
        if len(self._queue) >= self.config.batch_size:
            self._wakeup.set()

    async def _wait_for_room(self) -> bool:
        """Backpressure: wait (waking the writer) until the queue is under
        :data:`MAX_QUEUED_ROWS`; ``False`` if that takes over ``max_commit_wait`` seconds,
        or at once while writes fail (no sender stalls on a database that is down)."""
        if self._failing:
            return False
        with trio.move_on_after(self.config.max_commit_wait):
            while len(self._queue) >= MAX_QUEUED_ROWS:
                self._wakeup.set()
                if self._room is None:
                    self._room = trio.Event()
                await self._room.wait()
            return True
        return False

    def _drop(self, count: int) -> None:
        """Rows the archive cannot take (the database is down): counted, logged seldom."""
        self.dropped += count
        now = trio.current_time()
        if now - self._dropped_logged_at >= DROP_LOG_EVERY:
            self._dropped_logged_at = now
            log.warning("event=mam_queue_full dropped=%d", self.dropped, extra={"rows": count})

    async def committed(self, seq: int) -> None:
        """Return once the rows numbered up to ``seq`` are committed, or after
        ``max_commit_wait`` seconds (database down: logged, the rows stay queued).

        Group commit: the first waiter writes everything queued (under the flush lock);
        those waiting behind it find their rows written by then."""
        if self.committed_seq >= seq:
            return
        with trio.move_on_after(self.config.max_commit_wait):
            while self.committed_seq < seq:
                if not await self.flush():
                    await trio.sleep(0.2)  # the database refused: try again shortly
            return
        log.warning("event=mam_ack_before_commit seq=%d committed=%d", seq, self.committed_seq)

    async def _wants(self, owner: str, other: str) -> bool:
        """The owner's preferences (XEP-0441) for a conversation with bare JID ``other``."""
        prefs = self.prefs.get(owner)
        if prefs is not None:
            decided = prefs.decide(other)
        else:  # what Prefs(default) decides, without making one per message
            default = self.config.default
            decided = None if default == "roster" else default == "always"
        if decided is not None:
            return decided
        if other == owner:
            return True
        item = await self.adb.run(self.adb.db.get_roster_item, owner, other)
        return item is not None

    @staticmethod
    def _new_id() -> str:
        return secrets.token_urlsafe(12)

    def _stamp(self) -> datetime:
        now = max(datetime.now(UTC), self._last_stamp)
        self._last_stamp = now
        return now

    # ------------------------------------------------------------------ iqs
    async def handle_iq(
        self, stanza: etree._Element, origin: Session | None, router: Router
    ) -> etree._Element:
        """``<query/>`` (get: the form; set: a query) and ``<prefs/>`` (get/set) of the
        sender's own archive."""
        kind, account = addressee_of(stanza, origin)
        if kind is Addressee.SERVER:
            raise StanzaError("service-unavailable", "the server itself keeps no archive")
        if kind is Addressee.OTHER or origin is None or account is None:
            raise StanzaError("forbidden", "only the account itself may use its archive")
        payload, iq_type = stanza[0], stanza.get("type")
        reply = etree.Element(IQ, type="result", nsmap={None: ns.CLIENT})
        if payload.tag == PREFS:
            reply.append(await self._prefs(origin.bare_str, payload, iq_type))
            return reply
        if payload.tag == METADATA:
            if iq_type != "get":
                raise StanzaError("bad-request", "archive metadata is read with a get")
            reply.append(await self._metadata(origin.bare_str))
            return reply
        if iq_type == "get":
            q = etree.SubElement(reply, QUERY, nsmap={None: MAM})
            q.append(query_form(extended=True))
            return reply
        reply.append(await self._query(origin, payload))
        return reply

    async def _query(self, origin: Session, payload: etree._Element) -> etree._Element:
        """Run one query; send the results; return the ``<fin/>`` (§4.2)."""
        req = parse_query(payload, self.config.max_page, _with, extended=True)
        await self.flush()
        owner = origin.bare_str
        page = await self.adb.run(self.store.query, owner, req)
        page = fit_page(page, self.page_bytes, backwards=req.before is not None)
        messages, fin = result_stanzas(req, page, owner)
        for message in messages:
            message.set("to", origin.full_str)
            origin.send(etree.tostring(message))
        log.info(
            "event=mam_query owner=%s results=%d complete=%s",
            owner, len(messages), page.complete,
            extra={"owner": owner, "results": len(messages)},
        )  # fmt: skip
        return fin

    async def _metadata(self, owner: str) -> etree._Element:
        """§5: ``<start/>`` and ``<end/>`` (id, timestamp) of the archive; none if empty."""
        await self.flush()
        el = etree.Element(METADATA, nsmap={None: MAM})
        bounds = await self.adb.run(self.store.bounds, owner)
        for name, (stanza_id, stamp) in zip(("start", "end"), bounds, strict=False):
            tag = "{%s}%s" % (MAM, name)
            etree.SubElement(el, tag, id=stanza_id, timestamp=format_stamp(stamp))
        return el

    async def _prefs(self, owner: str, payload: etree._Element, iq_type: str | None) -> Any:
        """XEP-0441: read the preferences, or replace them (stored first, then in effect)."""
        if iq_type == "get":
            return prefs_element(self.prefs.get(owner) or Prefs(self.config.default))
        prefs = parse_prefs(payload, self.config.max_pref_jids)
        await self.adb.run(self.store.save_prefs, owner, prefs)
        self.prefs[owner] = prefs
        log.info(
            "event=mam_prefs_set owner=%s default=%s always=%d never=%d",
            owner, prefs.default, len(prefs.always), len(prefs.never),
            extra={"owner": owner},
        )  # fmt: skip
        return prefs_element(prefs)

    # ------------------------------------------------------------- background
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Write queued rows in batches; purge past ``retention_days`` once an hour."""
        task_status.started()
        next_purge = trio.current_time()
        try:
            while True:
                with trio.move_on_after(self.config.flush_interval):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()
                if not await self.flush():
                    await trio.sleep(1.0)
                if self.config.retention_days and trio.current_time() >= next_purge:
                    next_purge = trio.current_time() + PURGE_EVERY
                    await self.purge()
        finally:
            with trio.CancelScope(shield=True):
                await self.flush()

    async def flush(self) -> bool:
        """Write everything queued (batch by batch, in order); False on a failure, after
        which the batch stays queued for the next round (an outage delays, loses nothing)."""
        async with self._flush_lock:
            while self._queue:
                size = self.config.batch_size
                batch, self._queue = self._queue[:size], self._queue[size:]
                try:
                    await self.adb.run(self.store.write_batch, batch)
                except Exception:
                    log.exception("event=mam_write_failed count=%d", len(batch))
                    self._queue[:0] = batch
                    self._failing = True
                    return False
                self._failing = False
                self.written += len(batch)
                self.committed_seq += len(batch)
                if self._room is not None and len(self._queue) < MAX_QUEUED_ROWS:
                    self._room.set()
                    self._room = None
        return True

    async def purge(self) -> int:
        """Delete what is older than ``retention_days`` (0: nothing); how many."""
        if not self.config.retention_days:
            return 0
        cutoff = datetime.now(UTC) - timedelta(days=self.config.retention_days)
        try:
            removed = await self.adb.run(self.store.purge_before, cutoff)
        except Exception:
            log.exception("event=mam_purge_failed")
            return 0
        log.info("event=mam_purged count=%d", removed, extra={"removed": removed})
        return removed
