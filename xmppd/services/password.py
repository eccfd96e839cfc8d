"""XEP-0077 §3.3 in-band password change for internal accounts (``jabber:iq:register``).

In-band *registration* stays off: forum accounts are made on the forum and internal ones
by ``xmppd user add``, so the stream features never offer ``iq-register`` and an
unauthenticated stream cannot reach this service. What a logged-in account can do:

- **get** (§3.2.1): ``<registered/>`` with its username (and, for forum accounts, where
  the password is changed);
- **set** ``<username/><password/>``: with the internal backend, the account's password
  becomes the new one — stored as SCRAM-SHA-1 and -SHA-256 keys with fresh salts, as
  ``xmppd user add`` does (:meth:`xmppd.storage.Database.set_password`), which also drops
  the authenticator's cached credentials, so the next login needs the new password;
- ``not-allowed`` for a forum (phpBB) account — the forum owns the password — for a
  username that is not the sender's own, and for ``<remove/>`` (no in-band cancellation);
- ``bad-request`` for a set without a username or with an empty password (§3.3: the
  server MUST keep the existing password then); ``not-acceptable`` for a password longer
  than :data:`MAX_PASSWORD_CHARS` or not a PRECIS OpaqueString.

The password is never logged, and errors never echo the request (§3.3: SHOULD NOT;
:func:`xmppd.xml.errors.error_reply` never does). Only sessions of the account reach the
handler: to the server (``to`` = our domain, as §3.3's example) or with no ``to``.
``jabber:iq:register`` is advertised in the server's disco#info only where a password
change works: with the internal backend.
"""

from __future__ import annotations

import logging
from typing import Self

from lxml import etree

from xmppd.auth.internal import InternalAuthenticator
from xmppd.jid import JIDError, nodeprep
from xmppd.router import Router
from xmppd.services.disco import Addressee, addressee_of, result_iq
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.session import Session
from xmppd.storage import AsyncDatabase, InvalidValue, UnknownUser
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

log = logging.getLogger("xmppd.password")

QUERY = "{%s}query" % ns.REGISTER
USERNAME = "{%s}username" % ns.REGISTER
PASSWORD = "{%s}password" % ns.REGISTER
REMOVE = "{%s}remove" % ns.REGISTER
#: Longest new password accepted (characters); SASL PLAIN logins carry it whole.
MAX_PASSWORD_CHARS = 1024


def requested_change(query: etree._Element, localpart: str) -> str:
    """The new password of a §3.3 request by the account ``localpart``, or the error."""
    if query.find(REMOVE) is not None:
        raise StanzaError("not-allowed", "accounts are not cancelled in-band")
    username, password = query.find(USERNAME), query.find(PASSWORD)
    if username is None or password is None or not (username.text or "").strip():
        raise StanzaError("bad-request", "a password change needs <username/> and <password/>")
    name = (username.text or "").strip()
    if "@" in name:  # the data form's example uses the bare JID
        name = name.split("@", 1)[0]
    try:
        same = nodeprep(name) == localpart
    except JIDError:
        same = False
    if not same:
        raise StanzaError("not-allowed", "only your own password can be changed")
    new = password.text or ""
    if not new:
        raise StanzaError("bad-request", "the new password is empty")
    if len(new) > MAX_PASSWORD_CHARS:
        raise StanzaError("not-acceptable", f"a password may be {MAX_PASSWORD_CHARS} characters")
    return new


class PasswordService(Service):
    """``jabber:iq:register`` on authenticated streams: password change only."""

    name = "password"

    def __init__(self, adb: AsyncDatabase, changeable: bool) -> None:
        self.adb = adb
        #: The backend keeps passwords here (internal); otherwise the forum does.
        self.changeable = changeable

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self:
        changeable = isinstance(ctx.authenticator, InternalAuthenticator)
        service = cls(ctx.adb, changeable)
        ctx.router.server_iq[QUERY] = service.handle_iq
        if changeable:
            ctx.router.features.add(ns.REGISTER)
        return service

    async def handle_iq(
        self, stanza: etree._Element, origin: Session | None, router: Router
    ) -> etree._Element:
        kind, _account = addressee_of(stanza, origin)
        if kind is Addressee.OTHER:
            raise StanzaError("service-unavailable")
        if origin is None or origin.jid.local is None:
            raise StanzaError("not-allowed", "only local accounts change passwords here")
        localpart = origin.jid.local
        query = stanza[0]
        if stanza.get("type") == "get":
            return self._registered(localpart)
        if not self.changeable:
            raise StanzaError("not-allowed", "change your password on the forum")
        new = requested_change(query, localpart)
        try:
            await self.adb.run(self.adb.db.set_password, localpart, new)
        except InvalidValue:
            raise StanzaError("not-acceptable", "not a usable password") from None
        except UnknownUser:
            raise StanzaError("not-allowed", "no such account") from None
        log.info("event=password_change owner=%s transport=%s", localpart, origin.transport)
        return result_iq()

    def _registered(self, localpart: str) -> etree._Element:
        reply = result_iq()
        q = etree.SubElement(reply, QUERY, nsmap={None: ns.REGISTER})
        if not self.changeable:
            etree.SubElement(
                q, "{%s}instructions" % ns.REGISTER
            ).text = "This account is your forum account: change its password on the forum."
        etree.SubElement(q, "{%s}registered" % ns.REGISTER)
        etree.SubElement(q, USERNAME).text = localpart
        etree.SubElement(q, PASSWORD)
        return reply
