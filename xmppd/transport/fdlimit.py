"""The file-descriptor budget: how many client connections one process can hold.

Every accepted connection is a descriptor. When they run out, ``accept`` fails with
EMFILE, trio backs off, and nobody — not even a normal login — gets in until some close;
worse, the database pool and log rotation fail too. So the total connection cap
(``limits.max_connections``) is kept below the process's ``RLIMIT_NOFILE``, leaving room
for what is not a client: the database pools, log files, the listeners, outgoing
connections (phpBB's database), component connections, TLS and DNS.
"""

from __future__ import annotations

import resource

#: Descriptors always kept free for what is not a client connection.
RESERVED_MIN = 128


def soft_limit() -> int:
    """The current soft ``RLIMIT_NOFILE`` (a large number when unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def raise_soft_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (no privilege needed); the result.

    Distributions start services with a soft limit of 1024 and a much higher hard one;
    a server that holds thousands of connections should use what it is allowed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # some systems refuse an "unlimited" soft limit itself; 2**20 is plenty
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft_limit()
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        pass  # e.g. macOS caps below its "unlimited" hard limit: keep what we have
    return soft_limit()


def connection_budget(nofile: int) -> int:
    """Client connections that fit below ``nofile`` descriptors, with room for the rest.

    A sixteenth of the limit, and at least :data:`RESERVED_MIN`, stays free; a tiny limit
    still admits half of it.
    """
    reserve = max(RESERVED_MIN, nofile // 16)
    return max(nofile - reserve, nofile // 2, 1)
