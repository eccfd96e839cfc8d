"""The client side of the admin socket: one request, one response (blocking, stdlib only).

``xmppd <command>`` calls :func:`call`; what went wrong is an exception the CLI turns
into a one-line message and an exit status: :class:`NotRunning` (no server: commands
that can fall back to the database do so), :class:`Denied`, :class:`NotXmppd` (the
path is something else's socket or no socket), :class:`NoAnswer`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from pathlib import Path
from typing import Any

from xmppd.admin.protocol import MAX_RESPONSE, Request, decode_response

#: Seconds to wait for the answer (sync-nicks of a big forum takes a while).
DEFAULT_TIMEOUT = 120.0


class AdminClientError(Exception):
    """The admin socket could not be used; the message is one line for the user."""


class NotRunning(AdminClientError):
    pass


class Denied(AdminClientError):
    pass


class NotXmppd(AdminClientError):
    pass


class NoAnswer(AdminClientError):
    pass


def _connect(path: Path, timeout: float) -> socket.socket:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotRunning(f"no admin socket at {path}") from None
    except PermissionError:
        raise Denied(f"permission denied: cannot reach the admin socket {path}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise NotXmppd(f"{path} is not a socket, so not xmppd's admin socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except ConnectionRefusedError:
        sock.close()
        raise NotRunning(f"nobody is listening on {path} (left by a crash?)") from None
    except PermissionError:
        sock.close()
        raise Denied(
            f"permission denied on the admin socket {path} (root, xmppd's own user or "
            "a member of admin.group may use it)"
        ) from None
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EPROTOTYPE:
            raise NotXmppd(f"{path} is not a stream socket, so not xmppd's admin socket") from None
        raise NotXmppd(f"{path}: {exc.strerror or exc}") from None
    return sock


def _receive(sock: socket.socket) -> bytes:
    data = bytearray()
    while b"\n" not in data and len(data) <= MAX_RESPONSE:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def call(
    path: Path, command: str, args: dict[str, Any], timeout: float = DEFAULT_TIMEOUT
) -> dict[str, Any]:
    """Run ``command`` on the server listening at ``path``; return its response document
    (``{"ok": …, "message": …, "result"|"error": …}``)."""
    sock = _connect(path, timeout)
    with sock:
        try:
            # The server may refuse (forbidden) and close before reading: answer first.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(Request(command, args).encode())
            data = _receive(sock)
        except TimeoutError:
            raise NoAnswer(f"no answer from the admin socket {path} within {timeout:g} s") from None
        except OSError as exc:
            raise NotXmppd(f"{path}: {exc.strerror or exc}") from None
    doc = decode_response(data.split(b"\n", 1)[0])
    if doc is None:
        raise NotXmppd(f"{path} did not answer like xmppd's admin socket")
    return doc
