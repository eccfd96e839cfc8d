"""The UNIX datagram socket: created safely, read without ever blocking the service.

A UNIX socket because the relay must not be reachable from outside the machine, and
datagrams because each forum event is one message with no framing (seed, "webridge").
Access is the file mode and group of the socket file (e.g. 0660, group www-data).
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from xmppd import unix_socket
from xmppd.unix_socket import UnixSocketError, bind_private
from xmppd.unix_socket import unlink_if_ours as unlink_if_ours  # this module's API too

log = logging.getLogger("bridges.webridge")


class SocketError(OSError):
    """The socket path cannot be used (not a socket, in use, unknown group…)."""


def in_use(path: Path) -> bool:
    """True if a process is reading at ``path`` (a datagram connect() succeeds)."""
    try:
        return unix_socket.in_use(path, socket.SOCK_DGRAM)
    except UnixSocketError as exc:
        raise SocketError(f"{path}: {exc}") from None


def bind(path: str | Path, mode: int = 0o660, group: str = "") -> tuple[socket.socket, int]:
    """Bind a datagram socket at ``path`` with ``mode``/``group``; (socket, inode).

    :func:`xmppd.unix_socket.bind_private`: bound under a temporary name, given its group
    and mode, then renamed over ``path``, so the path never exists with looser
    permissions. A stale socket file (nobody reading) is replaced; a live one or anything
    that is not a socket is left alone and is an error.
    """
    target = Path(path)
    try:
        gid = unix_socket.group_id(group) if group else -1
    except UnixSocketError:
        raise SocketError(f"socket.group: no group named {group!r}") from None
    try:
        sock, inode = bind_private(target, socket.SOCK_DGRAM, mode, gid)
    except UnixSocketError as exc:
        if "in use" in str(exc):
            raise SocketError(f"{target}: another process is already reading this socket") from None
        raise SocketError(f"{target}: {exc}") from None
    sock.setblocking(False)
    return sock, inode


def send(path: str | Path, data: bytes, timeout: float = 2.0) -> None:
    """Send one datagram to a running webridge (the ``say`` CLI, scripts, tests).

    Raises :class:`OSError` (``FileNotFoundError``, ``ConnectionRefusedError``…) when
    nothing is listening.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.send(data)
