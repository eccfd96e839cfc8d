"""The admin socket: a UNIX stream socket only local administrators can use.

Two locks on one door. The socket file is 0600 (or 0660 with ``admin.group``), bound
under a temporary name with an owner-only umask and renamed into place, so the real path
never exists with looser permissions. And every connection's peer credentials
(``SO_PEERCRED``) are checked: root, the server's own uid, or (with ``admin.group``) a
member of that group; anyone else gets a ``forbidden`` answer and nothing runs. So a
socket made world-writable by mistake is still not an open door.

A stale socket left by a crash (nobody accepting) is replaced; a live one means another
``xmppd serve`` already runs, and :func:`bind_admin_socket` refuses before anything
else of the second server opens.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from xmppd import unix_socket
from xmppd.admin.protocol import (
    MAX_REQUEST,
    AdminError,
    Reply,
    Request,
    decode_request,
    encode_error,
    encode_reply,
)
from xmppd.unix_socket import UnixSocketError, bind_private, unlink_if_ours

log = logging.getLogger("xmppd.admin")

Dispatch = Callable[[Request], Awaitable[Reply]]


class AdminSocketError(OSError):
    """The admin socket cannot be bound (in use, not a socket, no directory…)."""


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> Peer:
    """The connecting process's pid/uid/gid, as the kernel recorded them at connect()."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


def group_id(group: str) -> int:
    """``admin.group`` (a name or a number) as a gid; AdminSocketError if unknown."""
    try:
        return unix_socket.group_id(group)
    except UnixSocketError:
        raise AdminSocketError(f"admin.group: no group named {group!r}") from None


def is_member(uid: int, gid: int, group_gid: int) -> bool:
    """Whether the process (``uid``, primary ``gid``) belongs to ``group_gid``: its
    effective gid, the user's primary group, or the group's member list (/etc/group)."""
    if gid == group_gid:
        return True
    try:
        user = pwd.getpwuid(uid)
    except KeyError:
        return False
    if user.pw_gid == group_gid:
        return True
    try:
        return user.pw_name in grp.getgrgid(group_gid).gr_mem
    except KeyError:
        return False


def allowed(peer: Peer, group_gid: int | None, own_uid: int | None = None) -> bool:
    """Root, the server's own user, or a member of the configured group."""
    own = os.geteuid() if own_uid is None else own_uid
    if peer.uid in (0, own):
        return True
    return group_gid is not None and is_member(peer.uid, peer.gid, group_gid)


def bind_admin_socket(path: Path, group: str = "") -> tuple[socket.socket, int]:
    """Bind and listen at ``path`` (0600, or 0660 with ``group``); (socket, inode).

    Raises :class:`AdminSocketError` with a one-line reason when the path is served by
    another process, is something other than a socket, or cannot be created.
    """
    if not path.parent.is_dir():
        raise AdminSocketError(f"admin socket {path}: the directory {path.parent} does not exist")
    gid = group_id(group) if group else -1
    try:
        return bind_private(path, socket.SOCK_STREAM, 0o660 if gid != -1 else 0o600, gid)
    except UnixSocketError as exc:
        if "in use" in str(exc):
            raise AdminSocketError(
                f"admin socket {path} is in use: another xmppd is already running "
                "(or another program listens there)"
            ) from None
        raise AdminSocketError(f"admin socket {path}: {exc}") from None
    except OSError as exc:
        raise AdminSocketError(f"admin socket {path}: {exc.strerror or exc}") from None


class AdminListener:
    """Accepts admin connections and runs one request each through ``dispatch``."""

    def __init__(
        self,
        sock: socket.socket,
        inode: int,
        path: Path,
        *,
        group: str,
        timeout: float,
        version: str,
    ) -> None:
        self.sock = sock
        self.inode = inode
        self.path = path
        self.group_gid = group_id(group) if group else None
        self.timeout = timeout
        self.version = version

    async def serve(
        self, dispatch: Dispatch, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; the socket file goes away with the server."""
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self.sock))
        log.info("event=listening service=admin path=%s", self.path)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                await nursery.start(trio.serve_listeners, self._handler(dispatch), [listener])
        finally:
            unlink_if_ours(self.path, self.inode)
            with trio.CancelScope(shield=True):
                await listener.aclose()

    def _handler(self, dispatch: Dispatch) -> Callable[[trio.SocketStream], Awaitable[None]]:
        async def handle(stream: trio.SocketStream) -> None:
            async with stream:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._one(stream, dispatch)

        return handle

    async def _one(self, stream: trio.SocketStream, dispatch: Dispatch) -> None:
        peer = peer_credentials(stream.socket)  # type: ignore[arg-type]
        try:
            # Read first even from a peer that will be refused: its write then never
            # fails, and it reads a clear answer.
            with trio.fail_after(self.timeout):
                data = await _read_request(stream)
        except trio.TooSlowError:
            data, problem = b"", AdminError("bad-request", "no request within the timeout")
        except AdminError as err:
            data, problem = b"", err
        else:
            problem = None
        if not allowed(peer, self.group_gid):
            log.warning("event=admin_refused uid=%d gid=%d pid=%d", peer.uid, peer.gid, peer.pid)
            error = AdminError("forbidden", f"uid {peer.uid} may not use the admin socket")
            await stream.send_all(encode_error(self.version, error))
            return
        try:
            if problem is not None:
                raise problem
            request = decode_request(data)
        except AdminError as err:
            await stream.send_all(encode_error(self.version, err))
            return
        try:
            reply = await dispatch(request)
        except AdminError as err:
            log.info(
                "event=admin_command command=%s uid=%d ok=false error=%s",
                request.command,
                peer.uid,
                err.code,
            )
            await stream.send_all(encode_error(self.version, err))
            return
        except Exception:
            log.exception("event=admin_command_crashed command=%s", request.command)
            error = AdminError("internal-error", "the command failed: see the server's log")
            await stream.send_all(encode_error(self.version, error))
            return
        log.info("event=admin_command command=%s uid=%d ok=true", request.command, peer.uid)
        await stream.send_all(encode_reply(self.version, reply))


async def _read_request(stream: trio.SocketStream) -> bytes:
    """One line (or everything up to the client's EOF), at most MAX_REQUEST bytes."""
    data = bytearray()
    while b"\n" not in data:
        chunk = await stream.receive_some(MAX_REQUEST + 1)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise AdminError("bad-request", f"the request is larger than {MAX_REQUEST} bytes")
    line = bytes(data).split(b"\n", 1)[0]
    if not line.strip():
        raise AdminError("bad-request", "empty request")
    return line
