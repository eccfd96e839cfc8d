"""The UNIX datagram socket: created safely, read without ever blocking the service.

A UNIX socket because the relay must not be reachable from outside the machine, and
datagrams because each forum event is one message with no framing (seed, "webridge").
Access is the file mode and group of the socket file (e.g. 0660, group www-data).
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import socket
import stat
from pathlib import Path

log = logging.getLogger("bridges.webridge")


class SocketError(OSError):
    """The socket path cannot be used (not a socket, in use, unknown group…)."""


def in_use(path: Path) -> bool:
    """True if a process is reading at ``path`` (a datagram connect() succeeds)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as exc:
        raise SocketError(f"{path}: cannot check whether it is in use: {exc.strerror}") from None
    finally:
        probe.close()
    return True


def _gid(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise SocketError(f"socket.group: no group named {group!r}") from None


def bind(path: str | Path, mode: int = 0o660, group: str = "") -> tuple[socket.socket, int]:
    """Bind a datagram socket at ``path`` with ``mode``/``group``; (socket, inode).

    The socket is bound under a temporary name with umask 0177 (owner-only), given its
    group and mode, and only then renamed over ``path``: the real path never exists with
    looser permissions. A stale socket file (nobody reading) is replaced; a live one or
    anything that is not a socket is left alone and is an error.
    """
    target = Path(path)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise SocketError(f"{target}: exists and is not a socket; not replacing it")
        if in_use(target):
            raise SocketError(f"{target}: another process is already reading this socket")
        log.info("event=stale_socket_replaced path=%s", target)
    gid = _gid(group) if group else -1
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(tmp).st_mode):
            tmp.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(tmp))
        finally:
            os.umask(old_umask)
        try:
            if gid != -1:
                os.chown(tmp, -1, gid)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        inode = os.lstat(target).st_ino
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock, inode


def unlink_if_ours(path: str | Path, inode: int) -> None:
    """Remove the socket file at shutdown unless another instance replaced it."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)


def send(path: str | Path, data: bytes, timeout: float = 2.0) -> None:
    """Send one datagram to a running webridge (the ``say`` CLI, scripts, tests).

    Raises :class:`OSError` (``FileNotFoundError``, ``ConnectionRefusedError``…) when
    nothing is listening.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.send(data)
