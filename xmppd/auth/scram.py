"""Password -> stored SCRAM keys (RFC 5802 §3, RFC 7677).

The server keeps only StoredKey and ServerKey: enough to verify a client proof and
to prove itself back, but not enough to log in as the user if the database leaks.
Shared with the SASL mechanism in :mod:`xmppd.stream.scram` so both sides compute
the keys the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from precis_i18n import get_profile

from xmppd.auth.base import ScramCredentials, ScramHash

__all__ = ["DEFAULT_ITERATIONS", "SALT_BYTES", "derive_scram", "hash_digest", "prepare_password"]

DEFAULT_ITERATIONS = 4096  # RFC 7677 §4: at least 4096
SALT_BYTES = 16
_PASSWORD_PROFILE = get_profile("OpaqueString")


def prepare_password(password: str) -> bytes:
    """PRECIS OpaqueString (RFC 8265, successor of SASLprep), UTF-8 encoded.

    Raises ValueError for a password the profile refuses (empty, control characters):
    clients prepare it the same way, so such a password could never authenticate.
    """
    try:
        return _PASSWORD_PROFILE.enforce(password).encode("utf-8")
    except UnicodeError:
        raise ValueError("password is not a valid OpaqueString") from None


def hash_digest(hash_name: ScramHash, data: bytes) -> bytes:
    """H() of RFC 5802."""
    return hashlib.new(hash_name, data).digest()


def derive_scram(
    password: str,
    hash_name: ScramHash,
    salt: bytes | None = None,
    iterations: int = DEFAULT_ITERATIONS,
) -> ScramCredentials:
    """Derive StoredKey and ServerKey from ``password`` (random 16-byte salt by default)."""
    if iterations < 1:
        raise ValueError("iterations must be positive")
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    salted = hashlib.pbkdf2_hmac(hash_name, prepare_password(password), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    return ScramCredentials(
        salt=salt,
        iterations=iterations,
        stored_key=hash_digest(hash_name, client_key),
        server_key=hmac.digest(salted, b"Server Key", hash_name),
    )
