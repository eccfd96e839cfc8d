"""XEP-0363 HTTP file upload: the service at ``upload.<domain>`` that hands out slots.

Routed like the MUC service (``router.services[host]``) and listed in the server's
disco#items (§2). Its disco#info has the identity ``store/file``, the feature
``urn:xmpp:http:upload:0`` and the ``max-file-size`` form. A local account asks for a slot
(§4); it gets one unless the file is too large (``not-acceptable`` +
``<file-too-large/>``, §5), it asks too often (``upload.requests_per_minute``), its
stored files and open slots would pass ``upload.quota_per_user`` or the disk would keep
less than ``upload.min_free_space`` (all ``resource-constraint``, type wait, §5). A slot
is a row (:mod:`xmppd.storage.upload`): two random parts, the file id (in both URLs, and
the file's name on disk) and the PUT secret (only in the PUT URL; its hash is stored).
The HTTP side (:mod:`xmppd.http.upload`) asks :meth:`UploadService.check_put` before it
stores a body and :meth:`UploadService.stored` after; :meth:`UploadService.run` deletes
unused slots after ``slot_ttl`` and files after ``expire_days``.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import trio
from lxml import etree

from xmppd.config import Config, ConfigError
from xmppd.jid import JID
from xmppd.muc.limits import Buckets
from xmppd.private_files import private_dir
from xmppd.router import Router
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.session import Session
from xmppd.storage import AsyncDatabase
from xmppd.storage.upload import UploadRow, UploadStore
from xmppd.upload import policy
from xmppd.upload.config import UploadConfig
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError, error_reply

log = logging.getLogger("xmppd.upload")

IQ = "{%s}iq" % ns.CLIENT
MESSAGE = "{%s}message" % ns.CLIENT
DISCO_INFO = "{%s}query" % ns.DISCO_INFO
DISCO_ITEMS = "{%s}query" % ns.DISCO_ITEMS
PING = "{%s}ping" % ns.PING
#: Suffix of a file still being written: never served, deleted when the PUT fails.
PARTIAL = ".part"
#: Longest pause between two expiry sweeps (s).
SWEEP_EVERY = 600.0


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


class UploadService(Service):
    """Slots for local accounts, and what the HTTP routes ask about them."""

    name = "upload"
    keeps_stanza = False  # the router's Service: assume it may change what it is given

    def __init__(
        self, router: Router, adb: AsyncDatabase, config: UploadConfig, base_url: str, root: Path
    ) -> None:
        self.router = router
        self.adb = adb
        self.store = UploadStore(adb.db)
        self.config = config
        self.domain = config.service_host(router.domain)
        #: ``<public url>/upload/`` (ends with "/"): the URLs handed out start with it.
        self.base_url = base_url
        self.root = root
        per_minute = config.requests_per_minute
        self._requests = Buckets(per_minute, per_minute / 60.0)
        self._grant_lock = trio.Lock()
        #: file ids whose PUT is being received (a second one at once is a conflict)
        self.receiving: set[str] = set()

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self | None:
        config = ctx.config
        cfg = config.upload
        if not cfg.enabled:
            return None
        if not config.http.enabled:
            # nothing would take the PUTs: offer no service rather than one that fails
            log.warning("event=upload_off reason=%s", "http.enabled is false")
            return None
        host = cfg.service_host(ctx.router.domain)
        components = {c.domain for c in config.components}
        if host in ctx.router.services or host == ctx.router.domain or host in components:
            raise ConfigError(f"upload.host: {host} is already served (server, MUC or a component)")
        root = Path(cfg.directory)
        if not root.is_absolute():
            root = config.data_path / root
        service = cls(ctx.router, ctx.adb, cfg, public_base(config) + "/upload/", root)
        private_dir(root.absolute())
        ctx.router.services[host] = service
        ctx.router.disco_items[host] = "HTTP file upload"
        return service

    # ----------------------------------------------------------------- files
    def path_of(self, file_id: str) -> Path:
        """Where a file lives: named by its random id alone (checked by the caller)."""
        assert policy.FILE_ID.fullmatch(file_id), file_id
        return self.root / file_id

    def get_url(self, row: UploadRow) -> str:
        return self.base_url + policy.url_path(row.file_id, row.filename)

    # ------------------------------------------------------------------ XMPP
    async def handle(self, stanza: etree._Element, to: JID, origin: Session | None) -> None:
        """An iq to the service's domain; messages get ``service-unavailable``."""
        kind = stanza.get("type")
        if stanza.tag == MESSAGE and kind != "error":
            self.router.bounce(stanza, StanzaError("service-unavailable"))
        if stanza.tag != IQ or kind not in ("get", "set"):
            return
        try:
            reply = await self._iq(stanza, to, origin)
        except StanzaError as err:
            self.router.deliver_local(error_reply(stanza, err))
            return
        reply.set("from", str(to))
        self.router.reply_to(stanza, reply)

    async def _iq(self, stanza: etree._Element, to: JID, origin: Session | None) -> etree._Element:
        if to.local is not None or to.resource is not None or len(stanza) != 1:
            raise StanzaError("service-unavailable" if len(stanza) == 1 else "bad-request")
        payload, kind = stanza[0], stanza.get("type")
        reply = etree.Element(IQ, type="result", nsmap={None: ns.CLIENT})
        if kind == "get" and payload.tag == DISCO_INFO and payload.get("node") is None:
            reply.append(self._info())
        elif kind == "get" and payload.tag == DISCO_ITEMS and payload.get("node") is None:
            etree.SubElement(reply, DISCO_ITEMS, nsmap={None: ns.DISCO_ITEMS})
        elif kind == "get" and payload.tag == PING:
            pass
        elif kind == "get" and payload.tag == policy.REQUEST:
            reply.append(await self._slot(stanza, payload, origin))
        else:
            raise StanzaError("service-unavailable")
        return reply

    def _info(self) -> etree._Element:
        """§2: identity store/file, the feature, and the max-file-size form."""
        query = etree.Element(DISCO_INFO, nsmap={None: ns.DISCO_INFO})
        etree.SubElement(query, "{%s}identity" % ns.DISCO_INFO, category="store", type="file",
                         name="HTTP file upload")  # fmt: skip
        for var in (ns.DISCO_INFO, ns.DISCO_ITEMS, ns.PING, policy.NS):
            etree.SubElement(query, "{%s}feature" % ns.DISCO_INFO, var=var)
        query.append(policy.disco_form(self.config.max_file_size))
        return query

    async def _slot(
        self, stanza: etree._Element, request: etree._Element, origin: Session | None
    ) -> etree._Element:
        """§4: a slot for a local account, or the §5 error (nothing stored then)."""
        sender = JID.parse(stanza.get("from", ""))
        if origin is None or sender.domain != self.router.domain or sender.local is None:
            raise StanzaError("not-allowed", "only this server's accounts may upload here")
        cfg = self.config
        asked = policy.parse_request(request, cfg.max_file_size)
        owner = str(sender.bare)
        now = time.monotonic()
        if not self._requests.take(owner, now):
            wait = self._requests.retry_after(owner, now)
            when = datetime.now(UTC) + timedelta(seconds=max(1.0, wait))
            raise policy.try_later(f"at most {cfg.requests_per_minute} slots a minute", when)
        if cfg.min_free_space and self._free_space() - asked.size < cfg.min_free_space:
            log.warning("event=upload_disk_full user=%s asked=%d", owner, asked.size)
            raise policy.try_later("The server is short of disk space", None)
        file_id, secret = secrets.token_urlsafe(18), secrets.token_urlsafe(32)
        created = _now()
        row = UploadRow(file_id, owner, asked.filename, asked.size, asked.content_type,
                        secret_hash(secret), created, None)  # fmt: skip
        cutoff = created - timedelta(seconds=cfg.slot_ttl)
        async with self._grant_lock:  # one grant at a time: the quota sum stays true
            used = await self.adb.run(self.store.grant, row, cfg.quota_per_user, cutoff)
        if used is not None:
            log.info("event=upload_quota user=%s used=%d asked=%d", owner, used, asked.size)
            raise policy.try_later(
                f"Quota reached: {used} of {cfg.quota_per_user} bytes in use", None
            )
        log.info("event=upload_slot user=%s file=%s size=%d type=%s", owner, file_id,
                 asked.size, asked.content_type or "-")  # fmt: skip
        slot = etree.Element("{%s}slot" % policy.NS, nsmap={None: policy.NS})
        put_url = self.base_url + policy.url_path(file_id, asked.filename, secret)
        etree.SubElement(slot, "{%s}put" % policy.NS, url=put_url)
        etree.SubElement(slot, "{%s}get" % policy.NS, url=self.get_url(row))
        return slot

    def _free_space(self) -> int:
        """Bytes free for us on the files' disk (``statvfs``: no await, a few µs)."""
        return shutil.disk_usage(self.root).free

    # ------------------------------------------------------------------ HTTP
    async def check_put(
        self, file_id: str, secret: str, length: int | None, content_type: str | None
    ) -> tuple[int, UploadRow | None]:
        """Whether this PUT may store its body: (0, the slot) or (the HTTP status, None):
        404 no such slot, 403 wrong secret, 410 the slot's ``slot_ttl`` is over, 409
        already used or being used, 413/400 a ``Content-Length`` other than the slot's
        size (§6 MUST), 415 another ``Content-Type`` than the one the slot named (§6
        SHOULD)."""
        if not policy.FILE_ID.fullmatch(file_id) or not policy.PUT_SECRET.fullmatch(secret):
            return 404, None
        row = await self.adb.run(self.store.get, file_id)
        if row is None:
            return 404, None
        if not secrets.compare_digest(row.put_hash, secret_hash(secret)):
            return 403, None
        # After the last await: the caller marks it receiving before anyone else can look.
        if row.stored_at is not None or file_id in self.receiving:
            return 409, None
        if _now() - row.created_at > timedelta(seconds=self.config.slot_ttl):
            return 410, None
        if length is not None and length != row.size:
            return (413 if length > row.size else 400), None
        if not row.content_type:  # none named in the slot: any will do (§6)
            return 0, row
        try:
            if policy.normalise_type(content_type) != row.content_type:
                return 415, None
        except ValueError:
            return 415, None
        return 0, row

    async def stored(self, row: UploadRow) -> bool:
        """The file is complete and in place (renamed from its partial name)."""
        done = await self.adb.run(self.store.mark_stored, row.file_id, _now())
        if done:
            log.info("event=upload_stored user=%s file=%s size=%d", row.owner, row.file_id,
                     row.size)  # fmt: skip
        return done

    async def lookup(self, file_id: str) -> UploadRow | None:
        """A stored file (None: no such id, or not completely uploaded)."""
        if not policy.FILE_ID.fullmatch(file_id):
            return None
        row = await self.adb.run(self.store.get, file_id)
        return row if row is not None and row.stored_at is not None else None

    # ---------------------------------------------------------------- expiry
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Sweep expired slots and files now and every few minutes; partial files of
        PUTs a previous process did not finish go at start-up."""
        for stray in self.root.glob("*" + PARTIAL):
            stray.unlink(missing_ok=True)
        task_status.started()
        every = min(SWEEP_EVERY, float(self.config.slot_ttl))
        while True:
            try:
                await self.sweep()
            except Exception:  # a database hiccup must not end the service
                log.exception("event=upload_sweep_failed")
            await trio.sleep(every)

    async def sweep(self) -> int:
        """Delete unused slots and files past ``expire_days``; how many went."""
        now = _now()
        slot_cutoff = now - timedelta(seconds=self.config.slot_ttl)
        days = self.config.expire_days
        file_cutoff = now - timedelta(days=days) if days else None
        gone = await self.adb.run(self.store.expired, slot_cutoff, file_cutoff)
        gone = [g for g in gone if g not in self.receiving]
        if not gone:
            return 0
        for file_id in gone:
            if policy.FILE_ID.fullmatch(file_id):
                self.path_of(file_id).unlink(missing_ok=True)
        await self.adb.run(self.store.delete, gone)
        log.info("event=upload_expired count=%d", len(gone))
        return len(gone)


def public_base(config: Config) -> str:
    """Where browsers reach the HTTP port (no trailing "/"): ``upload.public_url``, else
    ``http.public_url``, else ``http://<http.host or domain>:<http.port><path_prefix>``."""
    if config.upload.public_url:
        return config.upload.public_url
    http = config.http
    if http.public_url:
        return http.public_url
    host = http.host if http.host not in ("", "0.0.0.0", "::") else config.server.domain  # noqa: S104
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{http.port}{http.path_prefix}"
