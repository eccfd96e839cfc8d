"""Failed-login throttling, shared by every auth backend and every transport.

:class:`LoginLimits` keeps one :class:`FailureLimiter` per dimension: the client's
address (IPv6 grouped per network, see :func:`~xmppd.transport.admission.address_key`)
and the account. A login runs as one :class:`LoginAttempt`:

1. the shell calls :meth:`LoginLimits.begin` before it hands credentials to a backend;
   that takes a place for the address, or refuses (``temporary-auth-failure``);
2. the backend calls :meth:`LoginAttempt.claim` with the account the credentials are
   for, *as the backend resolved it* (phpBB's user id, the internal localpart), before
   it checks the secret: so no spelling of a name gets a budget of its own;
3. the shell settles the attempt: ``failed()``, ``succeeded()`` or ``release()``.

Attempts in flight count like failures until they are settled, so N concurrent
guesses for one account (or from one address) check at most ``per_minute`` secrets,
however long the backend takes. This stops password guessing and SID guessing alike,
and keeps a flood of bad logins from turning into a flood of forum database queries.

A sliding window per key: at most ``per_minute`` failures within any 60 seconds. Memory
is bounded twice: per key by ``per_minute`` timestamps, overall by ``max_keys`` keys
(the least recently failed key is forgotten first; quiet keys are dropped as the window
passes them). In-flight counts exist only while attempts are open.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable

from xmppd.auth.base import AuthError
from xmppd.transport.admission import DEFAULT_IPV6_PREFIX, address_key


class FailureLimiter:
    """Count failed (and in-flight) attempts per key in a sliding window.

    ``per_minute <= 0`` disables it.
    """

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_keys: int = 65_536,
        window: float = 60.0,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        if window <= 0:
            raise ValueError("window must be positive")
        self.per_minute = per_minute
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._in_flight: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._failures)

    def set_per_minute(self, per_minute: int) -> None:
        """A new limit (a reload); failures already counted still count against it.

        Each key keeps at most ``per_minute`` timestamps, so the kept ones are resized:
        a raised limit must be reachable again, a lowered one keeps the newest.
        """
        self.per_minute = per_minute
        if per_minute <= 0:
            self._failures.clear()
            return
        for key, stamps in list(self._failures.items()):
            self._failures[key] = deque(stamps, maxlen=per_minute)

    def _expire(self, key: str, now: float) -> deque[float] | None:
        """Drop ``key``'s failures older than the window; forget the key when none remain."""
        stamps = self._failures.get(key)
        if stamps is None:
            return None
        horizon = now - self.window
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
            return None
        return stamps

    def _sweep(self, now: float, budget: int = 8) -> None:
        """Forget a few stale keys from the old end, so idle keys do not pile up."""
        for key in list(self._failures.keys())[:budget]:
            self._expire(key, now)

    def allowed(self, key: str) -> bool:
        """Whether another attempt for ``key`` may go ahead now (in-flight ones count)."""
        if self.per_minute <= 0:
            return True
        stamps = self._expire(key, self._clock())
        used = (0 if stamps is None else len(stamps)) + self._in_flight.get(key, 0)
        return used < self.per_minute

    def acquire(self, key: str) -> bool:
        """Count one attempt for ``key`` as in flight if :meth:`allowed`; else ``False``.

        Check and count happen in one call, so concurrent callers cannot all pass.
        Every successful ``acquire`` needs exactly one :meth:`release`.
        """
        if self.per_minute <= 0:
            return True
        if not self.allowed(key):
            return False
        self._in_flight[key] += 1
        return True

    def release(self, key: str) -> None:
        """End one in-flight attempt for ``key`` (record its failure separately)."""
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)

    def in_flight(self, key: str) -> int:
        """Attempts for ``key`` acquired and not yet released."""
        return self._in_flight.get(key, 0)

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` is allowed again (0 when it already is)."""
        if self.per_minute <= 0:
            return 0.0
        now = self._clock()
        stamps = self._expire(key, now)
        if stamps is None or len(stamps) < self.per_minute:
            return 0.0
        return max(0.0, stamps[-self.per_minute] + self.window - now)

    def record_failure(self, key: str) -> None:
        """Count one failed attempt for ``key``."""
        if self.per_minute <= 0:
            return
        now = self._clock()
        self._sweep(now)
        stamps = self._expire(key, now)
        if stamps is None:
            while len(self._failures) >= self.max_keys:
                self._failures.popitem(last=False)
            stamps = self._failures[key] = deque(maxlen=self.per_minute)
        else:
            self._failures.move_to_end(key)
        stamps.append(now)

    def reset(self, key: str) -> None:
        """Forget ``key``'s failures (after a successful login)."""
        self._failures.pop(key, None)


class LoginAttempt:
    """One login between :meth:`LoginLimits.begin` and its settlement (see module doc).

    Implements :class:`xmppd.auth.base.LoginGate`: backends see it as ``ctx.gate``.
    """

    __slots__ = ("_limits", "_open", "accounts", "address", "refused")

    def __init__(self, limits: LoginLimits, address: str) -> None:
        self._limits = limits
        self._open = True
        #: The address key this attempt holds a place for.
        self.address = address
        #: Account keys the backend claimed (and this attempt holds places for).
        self.accounts: list[str] = []
        #: An account had no attempts left: the secret was never checked.
        self.refused = False

    def claim(self, account: str) -> None:
        """Hold a place for ``account``; raise ``temporary-auth-failure`` if it has none."""
        if not self._open or account in self.accounts:
            return
        if not self._limits.by_account.acquire(account):
            self.refused = True
            raise AuthError("temporary-auth-failure", "too many failed attempts, try later")
        self.accounts.append(account)

    def failed(self) -> None:
        """The login failed: count it for the address and, if checked, for the accounts.

        A refused attempt counts for the address only: it cost a lookup, but guessed
        nothing, and counting it for the account would just extend the account's wait.
        """
        if not self._settle():
            return
        limits = self._limits
        limits.by_address.record_failure(self.address)
        if not self.refused:
            for account in self.accounts:
                limits.by_account.record_failure(account)

    def succeeded(self) -> None:
        """The login succeeded: the accounts' failures are forgotten (the address's stay)."""
        if self._settle():
            for account in self.accounts:
                self._limits.by_account.reset(account)

    def release(self) -> None:
        """Give the places back without a verdict (aborted exchange, closed connection)."""
        self._settle()

    def _settle(self) -> bool:
        """Release every place this attempt holds; ``False`` if that already happened."""
        if not self._open:
            return False
        self._open = False
        limits = self._limits
        limits.by_address.release(self.address)
        for account in self.accounts:
            limits.by_account.release(account)
        return True


class LoginLimits:
    """Failed-login limits per client address (IPv6 per ``/ipv6_prefix``) and per account."""

    def __init__(
        self,
        per_minute: int,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ipv6_prefix = ipv6_prefix
        self.by_address = FailureLimiter(per_minute, clock)
        self.by_account = FailureLimiter(per_minute, clock)

    def set_per_minute(self, per_minute: int) -> None:
        """``limits.auth_failures_per_minute`` changed (a reload): both dimensions follow."""
        self.by_address.set_per_minute(per_minute)
        self.by_account.set_per_minute(per_minute)

    def address_key(self, ip: str) -> str:
        return address_key(ip, self.ipv6_prefix)

    def begin(self, ip: str) -> LoginAttempt | None:
        """Start a login from ``ip``, or ``None`` when its address has no attempts left."""
        key = self.address_key(ip)
        if not self.by_address.acquire(key):
            return None
        return LoginAttempt(self, key)

    # Without a LoginAttempt: a cheap pre-check before any work, or a failure that
    # never reached a backend (a malformed SASL payload). ``account`` must be a key a
    # backend would claim, never a name as the client spelled it.
    def allowed(self, ip: str, account: str | None = None) -> bool:
        """Whether a login from ``ip`` (for ``account``) may go ahead now."""
        if not self.by_address.allowed(self.address_key(ip)):
            return False
        return account is None or self.by_account.allowed(account)

    def record_failure(self, ip: str, account: str | None = None) -> None:
        self.by_address.record_failure(self.address_key(ip))
        if account is not None:
            self.by_account.record_failure(account)
