"""XEP-0054 vcard-temp: each account's vCard, stored by the server, read by anyone.

An account sets its own vCard with an iq set (no ``to``, or its own bare JID) and anyone
reads it with an iq get to the account's bare JID (§3.1, §3.2). A set replaces the whole
vCard; it is kept as the serialised ``<vCard/>`` element (the stream's parser has already
enforced restricted XML) when it is at most ``[vcard] max_size`` bytes, otherwise it is
answered ``not-acceptable`` and nothing is stored. Setting another account's vCard is
``forbidden`` (§3.2 says "a stanza error"; RFC 6120 §8.3.3.5 names this one). A get for
an account without a vCard returns an empty ``<vCard/>`` (§3.1 allows that or
``item-not-found``; the empty result lets clients stop asking); one for an address with
no account never reaches this service — the router answers ``service-unavailable``
first (RFC 6121 §8.5.1). The server's own address has no vCard: an empty one.

Forum members (phpBB backend, ``[vcard] from_forum``): until a member sets a vCard,
theirs is made from the forum (:mod:`xmppd.auth.phpbb_profile`): the forum username as
FN and NICKNAME and, if the member has an avatar, a PHOTO. The PHOTO is ``TYPE`` +
``BINVAL`` when the file can be read on this machine, because that is the form XEP-0153
vCard avatars use and what desktop and phone clients show; a ``EXTVAL`` URL is the
fallback (remote avatars, or no ``forum_path``), which fewer clients show but costs nothing.
"""

from __future__ import annotations

import base64
import copy
import logging
from collections.abc import Awaitable, Callable
from typing import Self

from lxml import etree

from xmppd.auth.base import AuthError
from xmppd.auth.phpbb import PhpbbAuthenticator
from xmppd.auth.phpbb_profile import ForumProfile, ForumProfiles
from xmppd.jid import JID
from xmppd.router import Router
from xmppd.services.account_config import VcardConfig
from xmppd.services.disco import Addressee, addressee_of, result_iq
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.session import Session
from xmppd.storage import AsyncDatabase
from xmppd.storage.vcard import VcardStore
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

log = logging.getLogger("xmppd.vcard")

VCARD = "{%s}vCard" % ns.VCARD
#: Parses what this module serialised itself: no entities, no network, no huge trees.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
#: ``await hook(owner, vcard)`` after a client stored a vCard (:meth:`VcardService.on_set`).
SetHook = Callable[[str, etree._Element], Awaitable[None]]


def empty_vcard() -> etree._Element:
    """``<vCard xmlns='vcard-temp'/>``."""
    return etree.Element(VCARD, nsmap={None: ns.VCARD})


def serialise(payload: etree._Element) -> str:
    """``payload`` as XML text with only the namespace declarations it uses."""
    own = copy.deepcopy(payload)
    own.tail = None
    etree.cleanup_namespaces(own)
    return etree.tostring(own, encoding="unicode")


def parse_stored(xml: str) -> etree._Element:
    """A stored element back (it was serialised by :func:`serialise`)."""
    return etree.fromstring(xml, _PARSER)


def _field(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, "{%s}%s" % (ns.VCARD, name))
    if text is not None:
        el.text = text
    return el


def forum_vcard(profile: ForumProfile) -> etree._Element:
    """The vCard of a forum member who has not set one: username and avatar only."""
    card = empty_vcard()
    _field(card, "FN", profile.username)
    _field(card, "NICKNAME", profile.username)
    avatar = profile.avatar
    if avatar is not None and (profile.image is not None or avatar.url):
        photo = _field(card, "PHOTO")
        if profile.image is not None:
            _field(photo, "TYPE", avatar.mime)
            _field(photo, "BINVAL", base64.b64encode(profile.image).decode("ascii"))
        else:
            _field(photo, "EXTVAL", avatar.url)
    return card


class VcardService(Service):
    """vcard-temp for every local account (see the module docstring)."""

    name = "vcard"

    def __init__(
        self, config: VcardConfig, adb: AsyncDatabase, forum: ForumProfiles | None = None
    ) -> None:
        self.config = config
        self.adb = adb
        self.store = VcardStore(adb.db)
        self.forum = forum
        self.set_hooks: list[SetHook] = []

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self | None:
        """Answer vCard iqs (server and accounts) and advertise ``vcard-temp``; None when
        ``[vcard] enabled`` is false."""
        config = ctx.config.vcard
        if not config.enabled:
            return None
        forum = None
        auth = ctx.authenticator
        if config.from_forum and isinstance(auth, PhpbbAuthenticator):
            forum = ForumProfiles(
                auth,
                forum_path=config.forum_path,
                forum_url=config.forum_url,
                max_avatar_bytes=config.max_avatar_bytes,
            )
        service = cls(config, ctx.adb, forum)
        ctx.router.server_iq[VCARD] = service.handle_iq
        ctx.router.features.add(ns.VCARD)
        return service

    async def handle_iq(
        self, stanza: etree._Element, origin: Session | None, router: Router
    ) -> etree._Element:
        """Get anyone's vCard; set one's own (§3.1, §3.2)."""
        kind, account = addressee_of(stanza, origin)
        if stanza.get("type") == "set":
            if kind is not Addressee.OWN or origin is None or account is None:
                raise StanzaError("forbidden", "only your own vCard can be set")
            await self.store_vcard(str(account), stanza[0])
            return result_iq()
        reply = result_iq()
        if kind is Addressee.SERVER or account is None:
            reply.append(empty_vcard())
        else:
            reply.append(await self._get(account))
        return reply

    def on_set(self, hook: SetHook) -> None:
        """Call ``hook`` after each vCard a client sets (not after a ``tell=False``
        :meth:`store_vcard`, so a conversion that stores cannot loop, XEP-0398)."""
        self.set_hooks.append(hook)

    async def vcard_of(self, account: JID) -> etree._Element:
        """The account's vCard as a get returns it (the forum's until one is set)."""
        return await self._get(account)

    async def store_vcard(self, owner: str, payload: etree._Element, *, tell: bool = True) -> None:
        """Store ``owner``'s vCard within ``[vcard] max_size`` (``not-acceptable`` beyond,
        nothing stored); then the :meth:`on_set` hooks unless ``tell`` is False."""
        await self._set(owner, payload)
        for hook in self.set_hooks if tell else ():
            try:
                await hook(owner, payload)
            except Exception:  # a hook's bug must not fail the client's set
                log.exception("event=vcard_hook_failed owner=%s", owner)

    async def _set(self, owner: str, payload: etree._Element) -> None:
        xml = serialise(payload)
        size = len(xml.encode("utf-8"))
        if size > self.config.max_size:
            log.info("event=vcard_refused owner=%s size=%d", owner, size)
            raise StanzaError("not-acceptable", f"a vCard may be {self.config.max_size} bytes")
        await self.adb.run(self.store.put, owner, xml)
        log.info("event=vcard_set owner=%s size=%d", owner, size)

    async def _get(self, account: JID) -> etree._Element:
        xml = await self.adb.run(self.store.get, str(account))
        if xml is not None:
            return parse_stored(xml)
        if self.forum is not None and account.local is not None:
            try:
                profile = await self.forum.lookup(account.local)
            except AuthError:
                raise StanzaError(
                    "internal-server-error", "the forum does not answer", type_="wait"
                ) from None
            if profile is not None:
                return forum_vcard(profile)
        return empty_vcard()
