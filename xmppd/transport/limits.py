"""The client admission the configuration asks for, kept below the file-descriptor limit.

Shared by the server assembly (start-up) and :mod:`xmppd.reload` (a changed cap).
"""

from __future__ import annotations

import logging

from xmppd.config import Config
from xmppd.transport import fdlimit
from xmppd.transport.admission import Admission

log = logging.getLogger("xmppd.server")


def make_admission(config: Config) -> Admission:
    """The client admission: ``c2s.max_connections_per_ip`` per address, and a total that
    keeps the process below its file-descriptor limit (``limits.max_connections``)."""
    return Admission(
        config.c2s.max_connections_per_ip, total_cap(config), config.limits.ipv6_prefix
    )


def total_cap(config: Config) -> int:
    """``limits.max_connections``, or what the file-descriptor limit allows (never more)."""
    budget = fdlimit.connection_budget(fdlimit.soft_limit())
    total = config.limits.max_connections or budget
    if total > budget:
        log.warning("event=max_connections_lowered configured=%d fd_budget=%d", total, budget)
        total = budget
    return total
