"""Server side of SASL (RFC 4422) as pure step objects.

A mechanism never looks anything up itself. It returns a step that tells the stream
what it needs next:

- :class:`Challenge` — send ``<challenge/>`` with these bytes and wait for ``<response/>``;
- :class:`NeedPassword` — the shell must check (authcid, password) with the backend and
  report the outcome to the stream (PLAIN);
- :class:`NeedScramCredentials` — the shell must fetch stored keys for ``username`` and
  call :meth:`ServerMechanism.credentials` with them (or ``None`` if unknown);
- :class:`Success` — send ``<success/>`` with ``additional_data`` (may be empty);
- :class:`Failure` — send ``<failure/>`` with the RFC 6120 §6.5 condition.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from xmppd.auth.base import Identity, ScramCredentials, ScramHash


@dataclass(frozen=True, slots=True)
class Challenge:
    data: bytes


@dataclass(frozen=True, slots=True)
class NeedPassword:
    authcid: str
    authzid: str | None
    password: str


@dataclass(frozen=True, slots=True)
class NeedScramCredentials:
    username: str
    hash_name: ScramHash


@dataclass(frozen=True, slots=True)
class Success:
    identity: Identity
    additional_data: bytes = b""


@dataclass(frozen=True, slots=True)
class Failure:
    condition: str = "not-authorized"
    text: str | None = None


SaslStep = Challenge | NeedPassword | NeedScramCredentials | Success | Failure


class ServerMechanism:
    """One SASL exchange on the server side. A new instance per ``<auth/>``."""

    name: str = ""

    def start(self, initial_response: bytes | None) -> SaslStep:
        """Handle the ``<auth/>`` element's payload (``None`` when absent, ``b""`` for ``=``)."""
        raise NotImplementedError

    def respond(self, data: bytes) -> SaslStep:
        """Handle a ``<response/>`` payload."""
        return Failure("malformed-request", "unexpected response")

    def credentials(self, found: tuple[Identity, ScramCredentials] | None) -> SaslStep:
        """Continue after :class:`NeedScramCredentials`."""
        return Failure("temporary-auth-failure")


class PlainMechanism(ServerMechanism):
    """RFC 4616 PLAIN: ``[authzid] NUL authcid NUL passwd`` in UTF-8."""

    name = "PLAIN"

    def start(self, initial_response: bytes | None) -> SaslStep:
        if initial_response is None:
            return Challenge(b"")
        return self.respond(initial_response)

    def respond(self, data: bytes) -> SaslStep:
        parts = data.split(b"\x00")
        if len(parts) != 3:
            return Failure("malformed-request", "PLAIN needs authzid NUL authcid NUL password")
        try:
            authzid, authcid, password = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            return Failure("malformed-request", "PLAIN payload is not UTF-8")
        if not authcid or not password or len(authcid) > 1023 or len(password) > 1023:
            return Failure("not-authorized")
        return NeedPassword(authcid, authzid or None, password)


class ExternalMechanism(ServerMechanism):
    """RFC 4422 Appendix A EXTERNAL: the transport already proved who the client is.

    Offered only on a stream whose shell established ``identity`` out of band (the
    forum's session cookie on a same-origin HTTP request). The client may name an
    authorisation identity; only its own bare JID (or nothing) is accepted.
    """

    name = "EXTERNAL"

    def __init__(self, identity: Identity, domain: str) -> None:
        self.identity = identity
        self.domain = domain

    def start(self, initial_response: bytes | None) -> SaslStep:
        if initial_response is None:
            return Challenge(b"")
        return self.respond(initial_response)

    def respond(self, data: bytes) -> SaslStep:
        if data:
            try:
                authzid = data.decode("utf-8")
            except UnicodeDecodeError:
                return Failure("malformed-request", "authzid is not UTF-8")
            if authzid not in (self.identity.localpart, f"{self.identity.localpart}@{self.domain}"):
                return Failure("invalid-authzid")
        return Success(self.identity)


def decode_payload(text: str | None) -> bytes | None:
    """A SASL payload: absent -> None, ``=`` -> empty (RFC 6120 §6.4.2); raises
    ``binascii.Error`` (a ``ValueError``) when it is not base64."""
    if text is None:
        return None
    text = text.strip()
    if text in ("", "="):
        return b""
    return base64.b64decode(text, validate=True)


def xml_text(value: str) -> str:
    """``value`` escaped for element content (a ``<failure/>``'s ``<text/>``)."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
