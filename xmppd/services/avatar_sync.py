"""XEP-0398: one avatar per account, seen by XEP-0084 (PEP) and XEP-0153 (vCard) clients.

- **PEP to vCard** (§3.1, MUST): after a client publishes to ``urn:xmpp:avatar:metadata``,
  the ``<info/>`` without a ``url`` names an item of ``urn:xmpp:avatar:data``; its image
  becomes the vCard's PHOTO (TYPE + BINVAL) when its SHA-1 matches the id (the SHOULD) and
  the new vCard fits ``[vcard] max_size``. An empty ``<metadata/>`` (avatar disabled,
  XEP-0084 §3.5) removes the PHOTO. A publish that cannot be converted (no data item,
  bad base64, wrong hash, too big for a vCard) stays a valid PEP publish — XEP-0084 does
  not know about the vCard — and leaves the vCard as it was (logged).
- **vCard to PEP** (§3.2, MAY, done): after a client sets a vCard with a valid PHOTO, the
  data item (id = SHA-1) is published, then a metadata item with one ``<info/>`` (type
  from the vCard; width/height for PNG and GIF), which notifies contacts with ``+notify``.
  A vCard without a valid PHOTO leaves PEP alone (§3.2 converts "a valid photo attached";
  an old client editing its FN must not wipe a phone's avatar). An image over ``[pep]
  max_payload_bytes`` is not published (logged); the vCard is stored all the same.
- **Presence** (§4): each available presence an account's resource sends (broadcast and
  directed, MUC joins included) carries ``vcard-temp:x:update`` with the hash of the
  account's vCard PHOTO — a forum member's forum vCard included — by the rules of
  :func:`~xmppd.pubsub.avatar.stamp_presence`.

No loops: the conversions store with the hooks' ``tell=False`` paths
(:meth:`PepService.publish_for`, :meth:`VcardService.store_vcard`). Switched on by
``[vcard] pep_conversion`` when both PEP and vCards are enabled; the account then
advertises ``urn:xmpp:pep-vcard-conversion:0`` (§2).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Self

from lxml import etree

from xmppd.jid import JID
from xmppd.pubsub.avatar import (
    CONVERSION_FEATURE,
    DATA_NODE,
    METADATA_NODE,
    AvatarError,
    Photo,
    data_payload,
    metadata_payload,
    photo_from_data,
    photo_of,
    pick_info,
    stamp_presence,
    with_photo,
)
from xmppd.services.basic import BasicServices
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.services.pep import PepService
from xmppd.services.presence import PresenceManager
from xmppd.services.vcard import VcardService, parse_stored
from xmppd.session import Session
from xmppd.xml.errors import StanzaError

log = logging.getLogger("xmppd.avatar_sync")

#: Accounts whose avatar hash is remembered (LRU): a presence costs no vCard read.
HASH_CACHE_SIZE = 10_000


class AvatarSync(Service):
    """Converts avatars between PEP and vCard and stamps presence (module docstring)."""

    name = "avatar_sync"
    needs = (BasicServices, PresenceManager, PepService, VcardService)

    def __init__(self, pep: PepService, vcard: VcardService) -> None:
        self.pep = pep
        self.vcard = vcard
        #: bare JID -> SHA-1 of its vCard PHOTO ("" = none), most recently used last.
        self.hashes: OrderedDict[str, str] = OrderedDict()
        #: Accounts whose PEP avatar was checked since start-up (bounded like the hashes).
        self.checked: OrderedDict[str, None] = OrderedDict()

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self | None:
        """Hook PEP publishes, vCard sets and outgoing presence; None unless PEP and
        vCards are enabled and ``[vcard] pep_conversion`` is true."""
        pep, vcard = ctx.get(PepService), ctx.get(VcardService)
        if pep is None or vcard is None or not ctx.config.vcard.pep_conversion:
            return None
        sync = cls(pep, vcard)
        pep.on_publish(sync.published)
        vcard.on_set(sync.vcard_set)
        ctx.router.presence_stampers.append(sync.stamp)
        ctx.need(PresenceManager).watch(sync.resource_available)
        disco = ctx.need(BasicServices).disco
        disco.account_features = disco.account_features | {CONVERSION_FEATURE}
        return sync

    # ------------------------------------------------------------ presence
    async def photo_hash(self, owner: str) -> str:
        """The SHA-1 of the account's vCard PHOTO ("" when it has none or it is bad)."""
        cached = self.hashes.get(owner)
        if cached is not None:
            self.hashes.move_to_end(owner)
            return cached
        try:
            photo = photo_of(await self.vcard.vcard_of(JID.parse(owner)))
        except (AvatarError, StanzaError):
            photo = None
        return self._remember(owner, photo)

    def _remember(self, owner: str, photo: Photo | None) -> str:
        digest = photo.sha1 if photo is not None else ""
        self.hashes[owner] = digest
        self.hashes.move_to_end(owner)
        while len(self.hashes) > HASH_CACHE_SIZE:
            self.hashes.popitem(last=False)
        return digest

    async def stamp(self, presence: etree._Element, origin: Session) -> None:
        """XEP-0398 §4: the hash in each available presence of an account with a photo."""
        try:
            digest = await self.photo_hash(origin.bare_str)
        except Exception:  # the presence goes out unstamped rather than not at all
            log.exception("event=avatar_stamp_failed jid=%s", origin.full_str)
            return
        if digest:
            stamp_presence(presence, digest)

    async def resource_available(self, session: Session, available: bool) -> None:
        """An account with a vCard PHOTO (a forum member's forum avatar included) but no
        PEP avatar gets one at its first available presence since start-up, so XEP-0084
        clients see it too (the forum avatar was never "set" as a vCard)."""
        owner = session.bare_str
        if not available or owner in self.checked:
            return
        self.checked[owner] = None
        while len(self.checked) > HASH_CACHE_SIZE:
            self.checked.popitem(last=False)
        if await self.pep.item(owner, METADATA_NODE) is not None:
            return
        await self.vcard_set(owner, await self.vcard.vcard_of(session.bare))

    # ------------------------------------------------------- PEP to vCard
    async def published(self, owner: str, node: str, item_id: str, payload: str | None) -> None:
        """§3.1: a client's metadata publish becomes the vCard's PHOTO (or removes it)."""
        if node != METADATA_NODE or payload is None:
            return
        try:
            info = pick_info(parse_stored(payload))
            photo = None
            if info is not None:
                data = await self.pep.item(owner, DATA_NODE, info.item_id)
                if data is None:
                    raise AvatarError("no data item with that id")
                photo = photo_from_data(info, parse_stored(data))
        except (AvatarError, etree.XMLSyntaxError) as exc:
            log.info(
                "event=avatar_not_converted owner=%s way=pep_to_vcard reason=%r", owner, str(exc)
            )
            return
        card = await self.vcard.vcard_of(JID.parse(owner))
        try:
            if photo_of(card) == photo:
                self._remember(owner, photo)
                return
        except AvatarError:
            pass  # a bad PHOTO there: replace it
        new = with_photo(card, photo)
        try:
            await self.vcard.store_vcard(owner, new, tell=False)
        except StanzaError:
            log.info("event=avatar_not_converted owner=%s way=pep_to_vcard reason=size", owner)
            return
        self._remember(owner, photo)
        log.info(
            "event=avatar_converted owner=%s way=pep_to_vcard photo=%s",
            owner, photo.sha1 if photo else "-",
            extra={"owner": owner},
        )  # fmt: skip

    # ------------------------------------------------------- vCard to PEP
    async def vcard_set(self, owner: str, card: etree._Element) -> None:
        """§3.2: a client's vCard with a valid PHOTO is published as data + metadata."""
        try:
            photo = photo_of(card)
        except AvatarError as exc:
            self.hashes.pop(owner, None)
            log.info(
                "event=avatar_not_converted owner=%s way=vcard_to_pep reason=%r", owner, str(exc)
            )
            return
        self._remember(owner, photo)
        if photo is None or photo.sha1 == await self._pep_avatar(owner):
            return
        try:
            await self.pep.publish_for(owner, DATA_NODE, photo.sha1, data_payload(photo))
            await self.pep.publish_for(owner, METADATA_NODE, photo.sha1, metadata_payload(photo))
        except StanzaError as err:
            log.info(
                "event=avatar_not_converted owner=%s way=vcard_to_pep reason=%s",
                owner, err.condition,
            )  # fmt: skip
            return
        log.info(
            "event=avatar_converted owner=%s way=vcard_to_pep photo=%s",
            owner, photo.sha1,
            extra={"owner": owner},
        )  # fmt: skip

    async def _pep_avatar(self, owner: str) -> str | None:
        """The id of the current PEP avatar (None: none, or disabled)."""
        stored = await self.pep.item(owner, METADATA_NODE)
        if stored is None:
            return None
        try:
            info = pick_info(parse_stored(stored))
        except (AvatarError, etree.XMLSyntaxError):
            return None
        return info.item_id if info is not None else None
