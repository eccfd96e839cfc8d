"""Accounts in xmppd's own database, authenticated with stored SCRAM keys only.

PLAIN works without a stored password: the offered password is run through PBKDF2 with
the stored SCRAM-SHA-256 salt and iteration count, and the resulting StoredKey/ServerKey
are compared in constant time. PBKDF2 runs in a worker thread (a small limiter keeps it
from starving database calls); the event loop only awaits.

Because logins per second matter, credentials are cached in memory:

- a bounded LRU of SCRAM credentials (``cache_size`` entries, ``cache_ttl`` seconds).
  Changes made through the same :class:`~xmppd.storage.Database` object (``set_password``,
  ``delete_user``) invalidate entries at once through a listener; changes made by another
  process (the CLI, another node) are seen after at most ``cache_ttl`` seconds.
- with ``remember_passwords`` (default on), the entry also keeps an HMAC of the last
  password that verified, keyed by a random per-process secret. A repeated PLAIN login
  with the same password then skips PBKDF2; a different (e.g. wrong) password still pays
  the full PBKDF2 cost, so guessing gets no faster. Nothing reversible is kept, nothing
  leaves memory, and the memo dies with the credentials it was verified against.

Accounts with one hash's keys. An account imported from ejabberd keeps the SCRAM keys
ejabberd stored, and ejabberd stores ONE hash per account (``auth_scram_hash``, SHA-1 by
default); the other hash's keys cannot be derived without the password (RFC 5802 §3:
the server keeps StoredKey/ServerKey only). A SASL client picks the strongest mechanism
the stream features offer *before* it names the account (RFC 6120 §6.3.3; RFC 7677),
and most clients do not try another mechanism after a failure, so offering
SCRAM-SHA-256 while some account has SHA-1 keys only would lock those users out. So
:attr:`scram_hashes` — read when the backend is built, i.e. at each start — holds the
hashes *every* account has keys for, and the server offers exactly those SCRAM
mechanisms (plus PLAIN). (SASL2 with XEP-0480 upgrade tasks would let such a client
upgrade in-band; xmppd speaks SASL1 only, and XEP-0474's downgrade protection lists the
mechanisms the server really offers, which this keeps true.) A PLAIN login verifies
against whichever hash the account has; when it succeeds over TLS the missing keys are
derived from the password and stored (:meth:`Database.complete_keys`), so once every
imported user has logged in once with PLAIN (or had a new password set), the next start
offers SCRAM-SHA-256 again. ``xmppd import`` says how many accounts lack a hash.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import trio

from xmppd.auth.base import (
    AuthContext,
    AuthError,
    Identity,
    ScramCredentials,
    ScramHash,
    claim_account,
)
from xmppd.auth.scram import DEFAULT_ITERATIONS, derive_scram
from xmppd.jid import JIDError, nodeprep
from xmppd.storage import AsyncDatabase

__all__ = ["InternalAuthenticator"]

_DUMMY_SALT = secrets.token_bytes(16)


def verify_password(password: str, creds: ScramCredentials, hash_name: ScramHash) -> bool:
    """Whether ``password`` derives the stored keys (blocking: PBKDF2)."""
    try:
        derived = derive_scram(password, hash_name, salt=creds.salt, iterations=creds.iterations)
    except ValueError:  # not a valid OpaqueString: it can never have been set
        return False
    stored_ok = hmac.compare_digest(derived.stored_key, creds.stored_key)
    server_ok = hmac.compare_digest(derived.server_key, creds.server_key)
    return stored_ok and server_ok


@dataclass(slots=True)
class _Entry:
    creds: ScramCredentials
    expires: float
    verified: bytes | None = None  # HMAC(secret, password) that matched ``creds``


class _CredentialCache:
    """A thread-safe LRU with TTL; invalidation may arrive from a worker thread."""

    def __init__(self, size: int, ttl: float, clock: Callable[[], float]) -> None:
        self._size = size
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def get(self, localpart: str, hash_name: str) -> _Entry | None:
        key = (localpart, hash_name)
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            if entry.expires <= self._clock():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return entry

    def put(self, localpart: str, hash_name: str, creds: ScramCredentials) -> _Entry:
        entry = _Entry(creds, self._clock() + self._ttl)
        if self._size <= 0:
            return entry
        with self._lock:
            self._data[(localpart, hash_name)] = entry
            self._data.move_to_end((localpart, hash_name))
            while len(self._data) > self._size:
                self._data.popitem(last=False)
        return entry

    def invalidate(self, localpart: str) -> None:
        with self._lock:
            for hash_name in ("sha1", "sha256"):
                self._data.pop((localpart, hash_name), None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class InternalAuthenticator:
    """The ``internal`` backend: SCRAM-SHA-1/-256 and PLAIN against the users table."""

    name = "internal"

    def __init__(
        self,
        adb: AsyncDatabase,
        *,
        cache_size: int = 10_000,
        cache_ttl: float = 60.0,
        remember_passwords: bool = True,
        hash_threads: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._adb = adb
        self._cache = _CredentialCache(cache_size, cache_ttl, clock)
        self._remember = remember_passwords
        self._secret = secrets.token_bytes(32)
        threads = hash_threads or max(1, min(4, os.cpu_count() or 1))
        self._hash_limiter = trio.CapacityLimiter(threads)
        adb.db.add_user_listener(self.invalidate)
        #: the SCRAM hashes every account has keys for: the mechanisms to offer
        self.scram_hashes: tuple[ScramHash, ...] = cast(
            tuple[ScramHash, ...], adb.db.hashes_of_every_account()
        )

    def supports_scram(self) -> bool:
        return True

    def invalidate(self, localpart: str) -> None:
        """Forget cached credentials for ``localpart`` (called on password change/deletion)."""
        self._cache.invalidate(localpart)

    async def _entry(self, localpart: str, hash_name: ScramHash) -> _Entry | None:
        entry = self._cache.get(localpart, hash_name)
        if entry is not None:
            return entry
        creds = await self._adb.run(self._adb.db.get_scram, localpart, hash_name)
        if creds is None:
            return None
        return self._cache.put(localpart, hash_name, creds)

    def _memo(self, password: str) -> bytes:
        return hmac.digest(self._secret, password.encode("utf-8", "surrogatepass"), "sha256")

    async def check_password(self, username: str, password: str, ctx: AuthContext) -> Identity:
        """Verify a PLAIN login; every failure is ``not-authorized`` (no account oracle).

        The account is the nodeprep'd localpart (a name with control characters has
        none): the limiter is told before any lookup or PBKDF2.
        """
        try:
            localpart = nodeprep(username)
        except JIDError:
            raise AuthError("not-authorized") from None
        claim_account(ctx, localpart)
        hash_name: ScramHash = "sha256"
        entry = await self._entry(localpart, hash_name)
        if entry is None:  # no account, or one imported with SHA-1 keys only
            hash_name = "sha1"
            entry = await self._entry(localpart, hash_name)
        if entry is None:
            # Pay the same PBKDF2 cost as a real account so timing does not reveal names.
            dummy = ScramCredentials(_DUMMY_SALT, DEFAULT_ITERATIONS, b"", b"")
            await trio.to_thread.run_sync(
                verify_password, password, dummy, "sha256", limiter=self._hash_limiter
            )
            raise AuthError("not-authorized")
        memo = self._memo(password) if self._remember else None
        if memo is not None and entry.verified is not None:
            if hmac.compare_digest(memo, entry.verified):
                return Identity(localpart=localpart)
        creds = entry.creds
        ok = await trio.to_thread.run_sync(
            verify_password, password, creds, hash_name, limiter=self._hash_limiter
        )
        if not ok:
            raise AuthError("not-authorized")
        if ctx.secure and len(self.scram_hashes) < 2:
            # An imported account may lack a hash's keys: derive them while we can.
            await trio.to_thread.run_sync(
                self._adb.db.complete_keys, localpart, password, limiter=self._hash_limiter
            )
            entry = self._cache.get(localpart, hash_name) or entry
        if memo is not None:
            entry.verified = memo
        return Identity(localpart=localpart)

    async def scram_credentials(
        self, username: str, hash_name: ScramHash, ctx: AuthContext | None = None
    ) -> tuple[Identity, ScramCredentials] | None:
        """Stored keys for the SCRAM mechanism, or None (it then fakes a salt).

        The client-first message names the account: it is claimed here, since the
        proof is checked later without another call into the backend.
        """
        try:
            localpart = nodeprep(username)
        except JIDError:
            return None
        claim_account(ctx, localpart)
        entry = await self._entry(localpart, hash_name)
        if entry is None:
            return None
        return Identity(localpart=localpart), entry.creds

    async def user_exists(self, localpart: str) -> bool:
        if self._cache.get(localpart, "sha256") is not None:
            return True
        return await self._adb.run(self._adb.db.user_exists, localpart)

    async def aclose(self) -> None:
        """Drop cached credentials; the database belongs to whoever created it."""
        self._cache.clear()
