"""UNIX socket files that never exist with looser permissions than intended.

Used by the admin socket (a stream socket, xmppd/admin/listener.py) and the webridge's
datagram socket (bridges/webridge/dgram.py). A socket is bound under a temporary name with
an owner-only umask, given its group and mode, and only then renamed over its path, so the
real path is never reachable by anyone it should not be. A stale socket file left by a
crash (nobody listening) is replaced; a live one, or anything that is not a socket, is an
error and is left alone.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import socket
import stat
from pathlib import Path

log = logging.getLogger("xmppd.unix_socket")


class UnixSocketError(OSError):
    """The path cannot be used: not a socket, in use, unknown group (one-line reason)."""


def group_id(group: str) -> int:
    """A group name or number as a gid; :class:`UnixSocketError` if there is none."""
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise UnixSocketError(f"no group named {group!r}") from None


def in_use(path: Path, kind: int = socket.SOCK_STREAM) -> bool:
    """Whether a process listens (stream) or reads (datagram) at ``path``."""
    probe = socket.socket(socket.AF_UNIX, kind)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as exc:
        raise UnixSocketError(f"cannot tell whether it is in use ({exc.strerror})") from None
    finally:
        probe.close()
    return True


def bind_private(
    path: Path, kind: int, mode: int, gid: int = -1, backlog: int = 16
) -> tuple[socket.socket, int]:
    """Bind a ``kind`` socket at ``path`` with ``mode`` (and group ``gid``); (socket, inode).

    Stream sockets also listen (``backlog``). Raises :class:`UnixSocketError` (path in
    use, not a socket) or ``OSError`` (no directory, no permission).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise UnixSocketError("exists and is not a socket; not replacing it")
        if in_use(path, kind):
            raise UnixSocketError("in use by another running process")
        log.info("event=stale_socket_replaced path=%s", path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(tmp).st_mode):
            tmp.unlink()
    sock = socket.socket(socket.AF_UNIX, kind)
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
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        if kind == socket.SOCK_STREAM:
            sock.listen(backlog)
        inode = os.lstat(path).st_ino
    except BaseException:
        sock.close()
        raise
    return sock, inode


def unlink_if_ours(path: str | Path, inode: int) -> None:
    """Remove the socket file at shutdown unless another instance replaced it."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
