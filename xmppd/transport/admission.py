"""Connection admission: who may open one more connection, counted the same everywhere.

Every listener (c2s TCP and direct TLS, the HTTP port's WebSocket and BOSH, components)
asks one :class:`Admission` before it spends anything on a peer. The check and the count
happen in one synchronous call (:meth:`Admission.try_admit`), with no ``await`` between
them, so concurrent handshakes from one address cannot all pass a cap they jointly exceed.

Addresses are grouped by :func:`address_key`: IPv4 addresses stand alone, IPv6 addresses
count per network prefix (a /64 by default: one subscriber usually holds a whole /64, so
counting single IPv6 addresses would give one attacker 2**64 budgets).
"""

from __future__ import annotations

import functools
import ipaddress
from collections import Counter
from types import TracebackType

DEFAULT_IPV6_PREFIX = 64


@functools.lru_cache(maxsize=8192)
def address_key(ip: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """The key an address is counted under: IPv4 as is, IPv6 as its ``/ipv6_prefix``.

    IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``) count as their IPv4 address, zone
    ids (``fe80::1%eth0``) are dropped, and anything that does not parse (a UNIX socket
    path, a test's fake peer) is its own key.
    """
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        prefix = min(max(ipv6_prefix, 0), 128)
        return str(ipaddress.IPv6Network((address, prefix), strict=False))
    return str(address)


@functools.lru_cache(maxsize=4096)
def is_loopback(ip: str) -> bool:
    """True for 127.0.0.0/8 and ::1 (zone ids dropped); False for anything unparsable."""
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class AdmissionTicket:
    """One admitted connection; :meth:`release` (or leaving the ``with``) gives it back."""

    __slots__ = ("_admission", "key")

    def __init__(self, admission: Admission, key: str) -> None:
        self._admission: Admission | None = admission
        self.key = key

    def release(self) -> None:
        """Idempotent: a ticket is counted once and given back once."""
        admission, self._admission = self._admission, None
        if admission is not None:
            admission._release(self.key)

    def __enter__(self) -> AdmissionTicket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Admission:
    """Per-address and total connection caps (0 means no cap)."""

    __slots__ = ("_per_key", "ipv6_prefix", "per_address", "total", "total_count")

    def __init__(
        self, per_address: int, total: int = 0, ipv6_prefix: int = DEFAULT_IPV6_PREFIX
    ) -> None:
        self.per_address = per_address
        self.total = total
        self.ipv6_prefix = ipv6_prefix
        self._per_key: Counter[str] = Counter()
        self.total_count = 0

    def resize(self, per_address: int, total: int) -> None:
        """New caps (a reload). Connections already admitted keep their tickets, even above
        a lowered cap; every later :meth:`try_admit` is checked against the new caps."""
        self.per_address = per_address
        self.total = total

    def key(self, ip: str) -> str:
        return address_key(ip, self.ipv6_prefix)

    def count(self, ip: str) -> int:
        """Connections currently admitted for ``ip``'s group."""
        return self._per_key.get(self.key(ip), 0)

    @property
    def full(self) -> bool:
        """The total cap is reached (a refusal then concerns everyone, not one address)."""
        return bool(self.total) and self.total_count >= self.total

    def try_admit(self, ip: str, *, exempt: bool = False) -> AdmissionTicket | None:
        """Count one more connection for ``ip``, or ``None`` when a cap is reached.

        ``exempt``: only the total cap applies (a trusted reverse proxy carries many
        clients on its one address; they are counted by their own address elsewhere).
        """
        key = self.key(ip)
        if self.total and self.total_count >= self.total:
            return None
        if not exempt and self.per_address and self._per_key[key] >= self.per_address:
            return None
        self._per_key[key] += 1
        self.total_count += 1
        return AdmissionTicket(self, key)

    def _release(self, key: str) -> None:
        self.total_count -= 1
        left = self._per_key[key] - 1
        if left > 0:
            self._per_key[key] = left
        else:
            del self._per_key[key]
