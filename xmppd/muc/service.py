"""The MUC service: the trio shell around the pure rooms.

Registered at ``router.services[host]``. It owns the room registry, room creation, the
service's own disco, delivery of room output to sessions, and the one background task
(:meth:`MucService.run`) that writes the archive and other changes to the database in
batches and reloads the nick registry. Nothing on the stanza path waits for the
database except MAM queries, which run in a worker thread. With ``muc.durable`` the
fan-out of an archived message waits for its batch's commit (:mod:`xmppd.muc.durable`).

Start-up (:meth:`MucService.load`) is synchronous on purpose: it runs before the server
accepts connections, loads rooms, affiliations, nicks and each room's history ring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import trio
from lxml import etree

from xmppd.jid import JID
from xmppd.metrics import NOT_EXPORTED, Metrics
from xmppd.muc.config import MucConfig, RoomSeed, seed_form
from xmppd.muc.core import RoomContext
from xmppd.muc.durable import Bounce, CommitGate, Held, Item, WriteQueue
from xmppd.muc.history import HistoryEntry
from xmppd.muc.limits import Buckets
from xmppd.muc.nicks import NickError, Registration, check_nick
from xmppd.muc.out import MamRequest, Out, RetractRequest
from xmppd.muc.room import Room
from xmppd.muc.roomconfig import RoomSettings
from xmppd.muc.stanzas import IQ, MESSAGE, MUC, PRESENCE
from xmppd.session import Session
from xmppd.storage import AsyncDatabase
from xmppd.storage.muc import MucStore, Write
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError, error_reply

if TYPE_CHECKING:
    from xmppd.router import Router

log = logging.getLogger("xmppd.muc")

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MucService:
    """XEP-0045 service at one domain (``conference.<domain>`` by default)."""

    keeps_stanza = False  # a room stamps its own 'from' (the occupant JID) on what it relays

    def __init__(
        self,
        router: Router,
        adb: AsyncDatabase,
        config: MucConfig,
        *,
        site_admins: Iterable[str] = (),
        clock: Clock = _utcnow,
    ) -> None:
        self.router = router
        self.adb = adb
        #: Every query the service makes (rooms, archive, nicks), run off the event loop.
        self.store = MucStore(adb.db)
        self.config = config
        self.domain = config.service_host(router.domain)
        self.clock = clock
        admins = {a.strip() for a in [*site_admins, *config.admins] if a.strip()}
        self.ctx = RoomContext(config=config, service=self.domain, site_admins=frozenset(admins))
        self.rooms: dict[str, Room] = {}
        per_minute = config.room_creations_per_minute
        self._creations = Buckets(per_minute, per_minute / 60.0)
        self._queue = WriteQueue()
        #: room output waiting for its commit (``muc.durable``)
        self.gate = CommitGate()
        self._wakeup = trio.Event()
        self._flush_lock = trio.Lock()
        self.written = 0
        #: Messages per room, archive write times (``xmppd.metrics``; the server's own).
        self.metrics: Metrics = NOT_EXPORTED

    @property
    def queue_depth(self) -> int:
        """Changes waiting for the next batch write (``xmppd_muc_archive_queue``)."""
        return len(self._queue)

    # ------------------------------------------------------------------ set-up
    def install(self) -> MucService:
        """Register with the router (service + disco item) after loading state."""
        self.load()
        self.router.services[self.domain] = self
        self.router.disco_items[self.domain] = self.config.name
        return self

    def load(self) -> None:
        """Blocking start-up: stored rooms, config rooms, nick registry, history rings."""
        store = self.store
        released = self._load_nicks(store.load_nicks())
        store.write_batch(released)
        for stored in store.load_rooms():
            room = self._make_room(stored.name, RoomSettings.from_json(stored.settings_json))
            room.affiliations = dict(stored.affiliations)
            room.registered_members = set(stored.registered_members)
            room.affiliation_reasons = dict(stored.reasons)
            room.subject, room.subject_nick = stored.subject, stored.subject_nick
        seeded: list[Write] = []
        for seed in self.config.rooms:
            room, _ = self._seed_room(seed)  # nobody is in a room yet: nothing to announce
            seeded.append(self._room_write(room))
        store.write_batch(seeded)
        self._drop_lapsed_memberships()
        for room in self.rooms.values():
            for sid, stamp, nick, sender, xml, origin in store.load_recent(
                room.name, self.config.history_max
            ):
                entry = HistoryEntry(sid, stamp, nick, sender, xml.encode("utf-8"), origin)
                room.history.append(entry)
        log.info(
            "event=muc_loaded host=%s rooms=%d nicks=%d",
            self.domain,
            len(self.rooms),
            len(self.ctx.nicks),
        )

    def seed_name(self, seed: RoomSeed) -> str:
        """The room name a ``[[muc.rooms]]`` entry stands for (prepared as a localpart)."""
        return JID.make(seed.name, self.domain).local or seed.name

    def _seed_room(self, seed: RoomSeed) -> tuple[Room, Out]:
        """Create the room ``seed`` describes (with its subject) or configure the existing
        one as it says: the settings an owner's form would set, announced to occupants."""
        name = self.seed_name(seed)
        room = self.rooms.get(name)
        if room is None:
            settings = RoomSettings(persistent=True, max_occupants=self.config.max_occupants)
            room = self._make_room(name, settings)
            room.subject = seed.subject
        return room, room.reconfigure(seed_form(seed))

    def apply_rooms(
        self, old: Sequence[RoomSeed], new: Sequence[RoomSeed]
    ) -> tuple[list[str], list[str]]:
        """``[[muc.rooms]]`` went from ``old`` to ``new`` (a reload); (added, changed) names.

        A new entry creates its room (or adopts a room users made under that name); a
        changed entry reconfigures its room, whose occupants stay and are told (status
        104, and 172/173 when ``whois`` changed); a changed ``subject`` is set and sent.
        An entry removed from the list leaves its room as a restart would: persistent,
        with its history, until an owner destroys it. Nothing here awaits.
        """
        before = {self.seed_name(seed): seed for seed in old}
        added: list[str] = []
        changed: list[str] = []
        for seed in new:
            name = self.seed_name(seed)
            previous = before.get(name)
            if previous == seed:
                continue
            existed = name in self.rooms
            room, out = self._seed_room(seed)
            self._apply(room, out)
            if existed and previous is not None and previous.subject != seed.subject:
                self._apply(room, room.set_subject(seed.subject))
            (changed if existed else added).append(name)
            log.info(
                "event=muc_room_configured room=%s by=config created=%s", room.jid_str, not existed
            )
        return added, changed

    def _load_nicks(self, rows: Iterable[tuple[str, str, str]]) -> list[Write]:
        """Replace the registry; the deletions of room-scoped squats it released.

        A room-scoped registration of a name that is reserved service-wide for someone
        else (or looks like one) predates the reservation: the reservation wins, and the
        squatter is told nothing but the log says so.
        """
        released: list[Registration] = self.ctx.nicks.replace_all(rows)
        writes = []
        for reg in released:
            holder = self.ctx.nicks.reserved_for_other(reg)
            log.info(
                "event=muc_nick_released room=%s nick=%s jid=%s reserved_for=%s",
                reg.scope, reg.nick, reg.jid, holder.jid if holder else "?",
            )  # fmt: skip
            writes.append(Write("nick", {"room": reg.scope, "jid": reg.jid, "nick": None}))
        return writes

    def _make_room(self, name: str, settings: RoomSettings) -> Room:
        room = Room(JID(name, self.domain, None), settings, self.ctx)
        self.rooms[name] = room
        return room

    @staticmethod
    def _room_write(room: Room) -> Write:
        return Write(
            "room",
            {
                "name": room.name,
                "settings_json": room.settings.to_json(),
                "subject": room.subject,
                "subject_nick": room.subject_nick,
            },
        )

    # ------------------------------------------------------------- background
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Write queued changes in batches; reload nicks; flush everything on cancel."""
        task_status.started()
        next_reload = trio.current_time() + self.config.nick_reload_interval
        try:
            async with trio.open_nursery() as nursery:
                if self.config.durable:
                    nursery.start_soon(self._expire_loop)
                await self._write_loop(next_reload)
        finally:
            with trio.CancelScope(shield=True):
                await self.flush()

    async def _write_loop(self, next_reload: float) -> None:
        while True:
            with trio.move_on_after(max(0.01, self.config.archive_flush_interval)):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            if not await self.flush():
                await trio.sleep(1.0)
            if trio.current_time() >= next_reload:
                next_reload = trio.current_time() + self.config.nick_reload_interval
                await self.reload_nicks()

    async def _expire_loop(self) -> None:
        """Answer senders whose durable message waited ``max_commit_wait`` in vain."""
        tick = max(0.02, min(1.0, self.config.max_commit_wait / 5))
        while True:
            await trio.sleep(tick)
            self._expire(trio.current_time())

    async def reload_nicks(self) -> int:
        """Load the nick registry from the database (after the CLI or a sync changed it)."""
        await self.flush()
        rows = await self.adb.run(self.store.load_nicks)
        # A registration made while loading is not in ``rows`` yet: its membership stays.
        settled = not any(w.kind == "nick" for _, w in self._queue.items)
        self._enqueue(self._load_nicks(rows))
        if settled:
            self._drop_lapsed_memberships()
        return len(self.ctx.nicks)

    def _drop_lapsed_memberships(self) -> None:
        """Memberships registration gave go with their registration (XEP-0045 §7.10)."""
        for room in list(self.rooms.values()):
            if room.registered_members:
                self._apply(room, room.drop_lapsed_memberships())

    async def flush(self) -> bool:
        """Write everything queued so far (in order, batch by batch); False on failure.

        A failed batch goes back to the head of the queue and is retried on the next
        round: a database outage delays the archive, it does not lose it or stop the chat.
        """
        async with self._flush_lock:
            while self._queue:
                size = max(1, self.config.archive_batch_size)
                batch = self._queue.take(size)
                try:
                    with self.metrics.archive_write_seconds.time():
                        await self.adb.run(self.store.write_batch, [w for _, w in batch])
                except Exception:
                    self.metrics.archive_write_failures.inc()
                    log.exception("event=muc_write_failed count=%d", len(batch))
                    self._queue.done(batch, ok=False)
                    return False
                self._queue.done(batch, ok=True)
                self.written += len(batch)
                self._release()
        return True

    def _enqueue(self, writes: Iterable[Write]) -> list[Item]:
        added = self._queue.add(writes)
        if added and len(self._queue) >= self.config.archive_batch_size:
            self._wakeup.set()
        return added

    def _release(self) -> None:
        """Send the held output whose writes are all committed, each room's in order."""
        for held in self.gate.release(self._queue.low()) if self.gate.rooms else ():
            self._deliver(held.out, self.rooms.get(held.room))

    def _hold(self, room: Room, out: Out, added: list[Item],
              bounce: Bounce | None, archived: bool) -> None:  # fmt: skip
        """Keep ``out`` until its writes (and the room's earlier output) are committed;
        wake the writer now: group commit, not the flush interval."""
        seq = added[-1][0] if added else 0
        deadline = trio.current_time() + self.config.max_commit_wait
        entries = list(out.archive) if archived else []
        held = Held(room.name, seq, out, deadline, list(added), entries, bounce)
        self.gate.hold(held)
        self._wakeup.set()

    def _expire(self, now: float) -> None:
        """Messages whose commit did not come in time: their writes are taken back, the
        ring forgets them (nobody ever saw them), the sender gets the error."""
        gone = self._queue.expire(self.gate, now)
        for held in gone:
            room = self.rooms.get(held.room)
            for entry in held.entries:
                if room is not None:
                    room.history.discard(entry)
            log.warning("event=muc_commit_timeout room=%s messages=%d",
                        held.room, len(held.entries))  # fmt: skip
            if held.bounce is not None:
                self.router.deliver_local(held.bounce.element())
        self._release()

    # ---------------------------------------------------------------- routing
    async def handle(self, stanza: etree._Element, to: JID, origin: Session | None) -> None:
        """A stanza for the service domain, a room, or an occupant JID."""
        from_attr = stanza.get("from")
        if from_attr is None:
            return
        sender = JID.parse(from_attr)
        if to.local is None:
            self._to_service(stanza, to, sender)
            return
        room = self.rooms.get(to.local)
        now = self.clock()
        if room is None:
            room = self._maybe_create(stanza, to, sender)
            if room is None:
                return
            out = room.join_as_creator(stanza, sender, to.resource or "", now)
            if out.gone:
                self.rooms.pop(room.name, None)
            else:
                log.info("event=muc_room_created room=%s owner=%s", room.jid_str, sender.bare)
            self._deliver(out)
            return
        tag = stanza.tag
        bounce = None
        if tag == MESSAGE:
            if self.config.durable and stanza.get("type") == "groupchat":
                bounce = Bounce(room.jid_str, str(sender), stanza.get("id"))
            out = room.handle_message(stanza, sender, to.resource, now)
        elif tag == PRESENCE:
            out = room.handle_presence(stanza, sender, to.resource, now)
        elif tag == IQ:
            out = room.handle_iq(stanza, sender, to.resource, now)
        else:
            return
        self._apply(room, out, bounce)
        for pm, rcpts in out.private:
            self._forget_lost(room, await self.router.deliver_observed(pm, rcpts, source=self))
        for routed in out.routed:
            await self.router.route(routed)
        if out.mam is not None:
            await self._run_mam(room, out.mam)
        if out.lookup is not None:
            await self._run_lookup(room, out.lookup)

    def _apply(self, room: Room, out: Out, bounce: Bounce | None = None) -> None:
        if out.archive:  # groupchat messages with a body, archived or not
            self.metrics.muc_messages(room.name, len(out.archive))
        writes: list[Write] = []
        if out.archive and room.settings.persistent:
            writes.extend(
                Write(
                    "message",
                    {
                        "room": room.name,
                        "stanza_id": e.stanza_id,
                        "stamp": e.stamp,
                        "nick": e.nick,
                        "sender": e.sender,
                        "stanza": e.xml.decode("utf-8"),
                        "origin_id": e.origin_id or None,
                    },
                )
                for e in out.archive
            )
        persistent = room.settings.persistent
        if out.save_room and persistent:
            writes.append(self._room_write(room))
            # The room may just have become persistent: store its whole list.
            out.affiliations = [*out.affiliations, *room.affiliations.items()]
        for jid, aff in out.affiliations if persistent else ():
            by_registration = jid in room.registered_members
            reason = room.affiliation_reasons.get(jid, "")
            writes.append(Write("affiliation", {"room": room.name, "jid": jid,
                                                "affiliation": aff, "reason": reason,
                                                "by_registration": by_registration}))  # fmt: skip
        for stanza_id, stone, actor in out.retractions:
            log.info("event=muc_message_retracted room=%s stanza_id=%s by=%s",
                     room.jid_str, stanza_id, actor)  # fmt: skip
            if persistent:
                writes.append(Write("retract", {"room": room.name, "stanza_id": stanza_id,
                                                "stanza": stone.decode("utf-8")}))  # fmt: skip
        for scope, jid, nick in out.nick_changes:
            writes.append(Write("nick", {"room": scope, "jid": jid, "nick": nick}))
        if out.gone:
            self.rooms.pop(room.name, None)
            writes.append(Write("room_delete", {"name": room.name}))
            log.info("event=muc_room_gone room=%s", room.jid_str)
        added = self._enqueue(writes)
        archived = bool(out.archive) and persistent
        if self.config.durable and (archived or self.gate.busy(room.name)):
            self._hold(room, out, added, bounce if archived else None, archived)
        else:
            self._deliver(out, room)

    def _deliver(self, out: Out, room: Room | None = None) -> None:
        """Hand the copies to the router; forget resources that are gone (status 333)."""
        self._forget_lost(room, self.router.deliver_many(out.sends, source=self))

    def _forget_lost(self, room: Room | None, lost: list[str]) -> None:
        if room is not None and lost:
            for full in dict.fromkeys(lost):
                if full in room.by_real:
                    log.info("event=muc_occupant_lost room=%s jid=%s", room.jid_str, full)
                    self._apply(room, room.remove_session(full))

    def occupant_nick(self, room: str, real_full: str) -> str | None:
        """The nick ``real_full`` has in ``room`` (a bare room JID), for XEP-0352 mentions."""
        local, _, domain = room.partition("@")
        found = self.rooms.get(local) if domain == self.domain else None
        occ = found.by_real.get(real_full) if found is not None else None
        return occ.nick if occ is not None else None

    def domain_gone(self, domain: str) -> None:
        """A component disconnected: its occupants leave every room (status 333)."""
        for room in list(self.rooms.values()):
            gone = [f for f in room.by_real if f.split("/", 1)[0].rpartition("@")[2] == domain]
            for full in gone:
                if full in room.by_real:
                    log.info("event=muc_occupant_lost room=%s jid=%s", room.jid_str, full)
                    self._apply(room, room.remove_session(full))

    def deliver(self, stanza: etree._Element, to: JID) -> None:
        """Server-made stanzas addressed to us (bounces): nothing to do."""

    # ------------------------------------------------------------- creation
    def _maybe_create(self, stanza: etree._Element, to: JID, sender: JID) -> Room | None:
        """A presence to a room that does not exist creates it (§10.1) when allowed."""
        if stanza.tag != PRESENCE or stanza.get("type") is not None:
            if stanza.tag != PRESENCE and stanza.get("type") not in ("error", "result"):
                self._bounce(stanza, StanzaError("item-not-found", "no such room"))
            return None
        if to.resource is None:
            self._bounce(stanza, StanzaError("jid-malformed", "join at room@service/nickname"))
            return None
        if stanza.find("{%s}x" % MUC) is None:
            return None
        if not self.config.allow_room_creation or sender.domain != self.router.domain:
            self._bounce(stanza, StanzaError("not-allowed", "rooms cannot be created here"))
            return None
        try:
            check_nick(to.resource, self.config.max_nick_length)
        except NickError as exc:
            self._bounce(stanza, StanzaError(exc.condition, exc.text))
            return None
        creator = str(sender.bare)
        refusal = self._creation_refusal(creator)
        if refusal is not None:
            log.info("event=muc_room_refused jid=%s reason=%s", creator, refusal.text)
            self._bounce(stanza, refusal)
            return None
        settings = RoomSettings(
            persistent=False, locked=True, max_occupants=self.config.max_occupants, creator=creator
        )
        room = self._make_room(to.local or "", settings)
        room.affiliations[creator] = "owner"
        return room

    def _creation_refusal(self, creator: str) -> StanzaError | None:
        """The limits on creating rooms (site admins have none), checked cheapest first.

        Each room costs memory (its history ring, occupants, caches) for as long as it
        exists: the total, what one user has created and still exists, and how fast one
        user creates are all bounded (``muc.max_rooms``, ``max_rooms_per_user``,
        ``room_creations_per_minute``).
        """
        if creator in self.ctx.site_admins:
            return None
        if len(self.rooms) >= self.config.max_rooms:
            return StanzaError("resource-constraint", "this service has all the rooms it can hold")
        mine = sum(1 for r in self.rooms.values() if r.settings.creator == creator)
        if mine >= self.config.max_rooms_per_user:
            limit = self.config.max_rooms_per_user
            return StanzaError("not-allowed", f"you may have created at most {limit} rooms")
        if not self._creations.take(creator, self.clock().timestamp()):
            return StanzaError("resource-constraint", "you are creating rooms too fast")
        return None

    def _bounce(self, stanza: etree._Element, err: StanzaError) -> None:
        reply = error_reply(stanza, err)
        if stanza.tag == PRESENCE:
            etree.SubElement(reply, "{%s}x" % MUC, nsmap={None: MUC})
        self.router.deliver_local(reply)

    # -------------------------------------------------------------- service
    def _to_service(self, stanza: etree._Element, to: JID, sender: JID) -> None:
        if stanza.tag != IQ or stanza.get("type") not in ("get", "set"):
            return
        if len(stanza) != 1:
            self._bounce(stanza, StanzaError("bad-request"))
            return
        tag = stanza[0].tag
        reply = etree.Element(IQ, type="result", nsmap={None: ns.CLIENT})
        if stanza.get("id") is not None:
            reply.set("id", stanza.get("id"))
        reply.set("from", self.domain)
        reply.set("to", str(sender))
        kind = stanza.get("type")
        if tag == "{%s}query" % ns.DISCO_INFO and kind == "get" and not stanza[0].get("node"):
            q = etree.SubElement(reply, tag, nsmap={None: ns.DISCO_INFO})
            etree.SubElement(q, "{%s}identity" % ns.DISCO_INFO, category="conference",
                             type="text", name=self.config.name)  # fmt: skip
            for var in sorted((ns.DISCO_INFO, ns.DISCO_ITEMS, MUC, ns.PING,
                               "urn:xmpp:mam:2", "urn:xmpp:occupant-id:0")):  # fmt: skip
                etree.SubElement(q, "{%s}feature" % ns.DISCO_INFO, var=var)
        elif tag == "{%s}query" % ns.DISCO_ITEMS and kind == "get" and not stanza[0].get("node"):
            q = etree.SubElement(reply, tag, nsmap={None: ns.DISCO_ITEMS})
            for name in sorted(self.rooms):
                room = self.rooms[name]
                if room.settings.public and not room.settings.locked:
                    etree.SubElement(q, "{%s}item" % ns.DISCO_ITEMS, jid=room.jid_str,
                                     name=room.settings.title or name)  # fmt: skip
        elif tag == "{%s}ping" % ns.PING and kind == "get":
            pass
        else:
            self._bounce(stanza, StanzaError("service-unavailable"))
            return
        self.router.deliver_local(reply)

    # --------------------------------------------------------- administration
    # What ``xmppd say|subject|room-ban|room-unban|destroy-room`` do (xmppd.admin): the
    # room's pure logic makes the change; it is persisted and delivered like any other.

    def say(self, room: Room, text: str) -> None:
        """A groupchat message from the room itself to every occupant (archived)."""
        self._apply(room, room.say(text, self.clock()))

    def set_subject(self, room: Room, text: str) -> None:
        """Change the subject as the room itself."""
        self._apply(room, room.set_subject_as_room(text))

    def set_affiliation(self, room: Room, bare: str, affiliation: str, reason: str | None) -> None:
        """Ban (``outcast``), unban (``none``)…; raises StanzaError as the room does."""
        self._apply(room, room.set_affiliation_as_service(bare, affiliation, reason))

    def destroy(self, room: Room, reason: str | None = None) -> None:
        """Destroy ``room`` (§10.9): occupants are told, its stored state is deleted."""
        self._apply(room, room.destroy(reason))

    # ------------------------------------------------------------------ MAM
    async def _run_mam(self, room: Room, request: MamRequest) -> None:
        await self.flush()  # what was broadcast must be findable
        try:
            page = await self.adb.run(self.store.query_archive, room.name, request.query)
        except StanzaError as err:
            self._deliver(room.mam_error(request, err))
            return
        self._deliver(room.mam_reply(request, page))

    async def _run_lookup(self, room: Room, request: RetractRequest) -> None:
        """A retraction of a message older than the room's memory: find it in the archive
        (XEP-0424/0425), then let the room check and carry it out."""
        await self.flush()  # what was broadcast must be findable
        find = self.store.find_message
        row = await self.adb.run(find, room.name, request.target, request.author)
        found = None if row is None else HistoryEntry(*row[:4], row[4].encode("utf-8"))
        if self.rooms.get(room.name) is not room:
            return  # destroyed meanwhile
        self._apply(room, room.retract_found(request, found, self.clock()))


def install(
    router: Router,
    adb: AsyncDatabase,
    config: MucConfig,
    site_admins: Iterable[str] = (),
    clock: Clock = _utcnow,
) -> MucService | None:
    """Create and register the MUC service; None when ``config.enabled`` is false."""
    if not config.enabled:
        return None
    return MucService(router, adb, config, site_admins=site_admins, clock=clock).install()


__all__ = ["MucService", "install"]
