"""Server side of SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677) as step objects.

Channel binding (-PLUS) is not offered, so a client that asks for it (gs2 flag ``p``)
is refused, while ``y`` ("I could bind, but you did not offer it") is accepted: we
really did not offer it, so there is no downgrade to detect (RFC 5802 §6).

Unknown users get a salt derived from a per-process secret and the username, and the
same iteration count as real accounts, so the exchange looks the same until the proof
fails with the same ``not-authorized`` a wrong password gets.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import os
import re
import secrets
from collections.abc import Callable

from xmppd.auth.base import Identity, ScramCredentials, ScramHash
from xmppd.auth.scram import DEFAULT_ITERATIONS, SALT_BYTES, hash_digest
from xmppd.jid import JID, JIDError, nodeprep
from xmppd.stream.sasl import (
    Challenge,
    Failure,
    NeedScramCredentials,
    SaslStep,
    ServerMechanism,
    Success,
)

__all__ = ["ScramSha1", "ScramSha256"]

_FAKE_SALT_SECRET = os.urandom(32)
_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+\Z")  # RFC 5802 "printable": no comma
_EXTENSION = re.compile(r"[A-Za-z]=")
_MAX_NAME_CHARS = 1023


class _State(enum.Enum):
    START = enum.auto()
    AWAIT_FIRST = enum.auto()
    AWAIT_CREDENTIALS = enum.auto()
    AWAIT_FINAL = enum.auto()
    DONE = enum.auto()


class _Malformed(Exception):
    """Input that breaks the RFC 5802 grammar."""


def _default_nonce() -> str:
    return secrets.token_urlsafe(24)


def _decode_saslname(value: str) -> str:
    # RFC 5802 §5.1: "=" may only appear as "=2C" (",") or "=3D" ("=").
    if not value or "\x00" in value or "," in value:
        raise _Malformed("bad saslname")
    if "=" in value:
        if re.search(r"=(?!2C|3D)", value):
            raise _Malformed("bad '=' escape in saslname")
        value = value.replace("=2C", ",").replace("=3D", "=")
    if len(value) > _MAX_NAME_CHARS:
        raise _Malformed("saslname too long")
    return value


def _b64decode(value: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _Malformed("bad base64") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _fake_salt(username: str) -> bytes:
    # Normalise first so "Juliet" and "juliet" get the same salt, as they would for
    # a real account: otherwise comparing two spellings would reveal unknown users.
    try:
        key = nodeprep(username)
    except JIDError:
        key = username
    return hmac.digest(_FAKE_SALT_SECRET, key.encode("utf-8"), "sha256")[:SALT_BYTES]


class _ScramMechanism(ServerMechanism):
    """One SCRAM exchange; subclasses only pick the hash."""

    hash_name: ScramHash = "sha256"

    def __init__(
        self,
        *,
        nonce_factory: Callable[[], str] = _default_nonce,
        domain: str | None = None,
        fake_iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        """``domain`` lets an authzid JID be checked; ``fake_iterations`` should match
        what real accounts use so unknown users cannot be told apart by it."""
        self._nonce_factory = nonce_factory
        self._domain = domain
        self._fake_iterations = fake_iterations
        self._state = _State.START
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._username = ""
        self._authzid: str | None = None
        self._identity: Identity | None = None
        self._creds: ScramCredentials | None = None

    # --- step protocol -------------------------------------------------------------

    def start(self, initial_response: bytes | None) -> SaslStep:
        if self._state is not _State.START:
            return self._fail("malformed-request", "exchange already started")
        if initial_response is None:
            self._state = _State.AWAIT_FIRST
            return Challenge(b"")
        return self._client_first(initial_response)

    def respond(self, data: bytes) -> SaslStep:
        if self._state is _State.AWAIT_FIRST:
            return self._client_first(data)
        if self._state is _State.AWAIT_FINAL:
            return self._client_final(data)
        return self._fail("malformed-request", "unexpected response")

    def credentials(self, found: tuple[Identity, ScramCredentials] | None) -> SaslStep:
        if self._state is not _State.AWAIT_CREDENTIALS:
            return self._fail("temporary-auth-failure", "credentials out of order")
        if found is None:
            salt, iterations = _fake_salt(self._username), self._fake_iterations
        else:
            self._identity, self._creds = found
            salt, iterations = self._creds.salt, self._creds.iterations
        self._nonce += self._nonce_factory()
        self._server_first = f"r={self._nonce},s={_b64(salt)},i={iterations}"
        self._state = _State.AWAIT_FINAL
        return Challenge(self._server_first.encode("ascii"))

    # --- messages ------------------------------------------------------------------

    def _client_first(self, data: bytes) -> SaslStep:
        try:
            self._parse_client_first(data)
        except _Malformed as exc:
            return self._fail("malformed-request", str(exc))
        self._state = _State.AWAIT_CREDENTIALS
        return NeedScramCredentials(self._username, self.hash_name)

    def _parse_client_first(self, data: bytes) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed("client-first-message is not UTF-8") from None
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise _Malformed("missing GS2 header")
        flag, authzid, bare = parts
        if flag.startswith("p="):
            raise _Malformed("channel binding is not supported")
        if flag not in ("n", "y"):
            raise _Malformed("bad GS2 channel binding flag")
        if authzid:
            if not authzid.startswith("a="):
                raise _Malformed("bad authzid")
            self._authzid = _decode_saslname(authzid[2:])
        attrs = bare.split(",")
        if attrs[0].startswith("m="):
            raise _Malformed("mandatory extensions are not supported")
        if len(attrs) < 2 or not attrs[0].startswith("n=") or not attrs[1].startswith("r="):
            raise _Malformed("client-first-message needs n= and r=")
        if not all(_EXTENSION.match(attr) for attr in attrs[2:]):
            raise _Malformed("bad extension")
        nonce = attrs[1][2:]
        if not _PRINTABLE.match(nonce):
            raise _Malformed("bad client nonce")
        self._username = _decode_saslname(attrs[0][2:])
        self._nonce = nonce
        self._gs2_header = f"{flag},{authzid},"
        self._client_first_bare = bare

    def _client_final(self, data: bytes) -> SaslStep:
        try:
            without_proof, proof = self._parse_client_final(data)
        except _Malformed as exc:
            return self._fail("malformed-request", str(exc))
        if without_proof is None:  # cbind or nonce mismatch: looks like tampering
            return self._fail("not-authorized")
        creds = self._creds
        size = len(hash_digest(self.hash_name, b""))
        if len(proof) != size:
            return self._fail("malformed-request", "bad proof length")
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof))
        message = auth_message.encode("utf-8")
        # Unknown users run the same computation against a key that cannot match.
        stored_key = creds.stored_key if creds else os.urandom(size)
        signature = hmac.digest(stored_key, message, self.hash_name)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        valid = hmac.compare_digest(hash_digest(self.hash_name, client_key), stored_key)
        if not valid or creds is None or self._identity is None:
            return self._fail("not-authorized")
        if not self._authzid_ok(self._identity):
            return self._fail("invalid-authzid")
        self._state = _State.DONE
        server_signature = hmac.digest(creds.server_key, message, self.hash_name)
        return Success(self._identity, b"v=" + base64.b64encode(server_signature))

    def _parse_client_final(self, data: bytes) -> tuple[str | None, bytes]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed("client-final-message is not UTF-8") from None
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep or not proof_b64 or "," in proof_b64:
            raise _Malformed("client-final-message needs p= last")
        proof = _b64decode(proof_b64)
        attrs = without_proof.split(",")
        if len(attrs) < 2 or not attrs[0].startswith("c=") or not attrs[1].startswith("r="):
            raise _Malformed("client-final-message needs c= and r=")
        if not all(_EXTENSION.match(attr) for attr in attrs[2:]):
            raise _Malformed("bad extension")
        cbind = _b64decode(attrs[0][2:])
        if cbind != self._gs2_header.encode("utf-8") or attrs[1][2:] != self._nonce:
            return None, proof
        return without_proof, proof

    def _authzid_ok(self, identity: Identity) -> bool:
        """RFC 6120 §6.3.8: a client may only ask to act as itself."""
        authzid = self._authzid
        if authzid is None or authzid in (self._username, identity.localpart):
            return True
        try:
            jid = JID.parse(authzid)
        except JIDError:
            return False
        return (
            jid.is_bare
            and jid.local == identity.localpart
            and (self._domain is None or jid.domain == self._domain)
        )

    def _fail(self, condition: str, text: str | None = None) -> Failure:
        self._state = _State.DONE
        return Failure(condition, text)


class ScramSha1(_ScramMechanism):
    """SCRAM-SHA-1 (RFC 5802): still the one mechanism every XMPP client has."""

    name = "SCRAM-SHA-1"
    hash_name: ScramHash = "sha1"


class ScramSha256(_ScramMechanism):
    """SCRAM-SHA-256 (RFC 7677)."""

    name = "SCRAM-SHA-256"
    hash_name: ScramHash = "sha256"
