"""The HTTP port's accept loop: admission before hypercorn reads a byte.

hypercorn's own ``serve`` accepts every connection and hands it straight to its
protocol handler, with no hook in between; one address could open connections until
the process ran out of file descriptors. So :func:`serve` does the accepting (as
hypercorn's trio worker does: its listeners from ``Config.create_sockets``, its
``TCPServer`` per connection) and asks the server's :class:`~xmppd.transport.admission.Admission`
first. Refused connections get a canned ``429``/``503`` (plain HTTP) or are closed (TLS,
before any handshake); nothing of theirs is read, and everyone else is still served.

What counts against ``c2s.max_connections_per_ip`` and the total (the same counter as
c2s and direct TLS):

- an **HTTP connection** counts one for its TCP peer from accept to close, whatever it
  carries: HTTP/1.1 keep-alive requests, HTTP/2 streams, or one WebSocket. Connections
  from a trusted reverse proxy count against the total only (many clients share them);
- a **BOSH session** counts one more for its client (the real one, behind a trusted
  proxy) for as long as it lives: it outlives the HTTP requests that carry it, and holds
  an XMPP session like a TCP connection does;
- a **WebSocket** counts one more for its client only when its connection does not
  already count that client alone: over HTTP/2 (many streams on one connection) or
  through a trusted proxy. A WebSocket on a direct HTTP/1.1 connection is that connection.

Every check and its count happen in one synchronous ``try_admit``, before any ``await``.

What a reload may change is read per connection, never captured at start: the TLS
context (``server.https_ssl_context``: an admitted HTTPS connection is wrapped in it here,
so a renewed certificate is what the next handshake sees) and the trusted proxies.

A connection whose peer has gone (EOF, reset, read timeout) must also give its count
back at once: hypercorn's trio ``TCPServer`` otherwise keeps an idle keep-alive
connection the client closed until ``keep_alive_timeout`` (its socket in CLOSE-WAIT).
So each connection gets its own hypercorn ``WorkerContext``, and the stream hypercorn
reads from is watched: when the peer is gone, that context is "terminated", which makes
hypercorn finish what is in flight and close instead of idling.

A connection that fails inside hypercorn is logged (``event=http_connection_failed``)
and closed; the others are served on.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from xmppd.server import Server

log = logging.getLogger("xmppd.http")


def _refusal(status: int, reason: str, text: str) -> bytes:
    body = (text + "\n").encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nretry-after: 10\r\nconnection: close\r\n\r\n"
    ).encode() + body


TOO_MANY_FROM_YOU = _refusal(429, "Too Many Requests", "too many connections from your address")
SERVER_FULL = _refusal(503, "Service Unavailable", "the server is at its connection limit")


#: Whether a peer address is a trusted reverse proxy (the HTTP app's current ProxyPolicy).
TrustsProxy = Callable[[str], bool]


def connection_counts_client(scope: dict[str, Any], trusts: TrustsProxy) -> bool:
    """Whether the HTTP connection carrying ``scope`` already counts its client alone:
    HTTP/1.1 straight from the client (not HTTP/2, not through a trusted proxy)."""
    client = scope.get("client")
    peer = client[0] if client else ""
    return scope.get("http_version") != "2" and not trusts(peer)


def _peer_ip(stream: trio.abc.Stream) -> str | None:
    transport = getattr(stream, "transport_stream", stream)  # under TLS: the TCP stream
    try:
        peer = transport.socket.getpeername()  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        return None
    return peer[0] if isinstance(peer, tuple) else str(peer)


async def _refuse(stream: trio.abc.Stream, canned: bytes | None) -> None:
    """Say why (plain HTTP only) and hang up, reading nothing; bounded and shielded."""
    transport = getattr(stream, "transport_stream", stream)
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        try:
            if canned is not None:
                await transport.send_all(canned)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            try:
                await transport.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass


class _PeerWatch:
    """The stream hypercorn uses; the peer's EOF, a failed read or a stalled write ends
    the connection.

    hypercorn shields every ``send_all`` from cancellation, so a peer that stops reading
    (a WebSocket, a long BOSH response) would hold its connection forever once the
    kernel's buffers are full; the deadline here is a scope inside that shield, which
    still fires: after ``send_timeout`` seconds the write gives up, the connection is
    broken, and hypercorn closes it. Everything else (``socket``, TLS's
    ``do_handshake``…) is the wrapped stream's own.
    """

    def __init__(self, stream: trio.abc.Stream, context: Any, send_timeout: float, ip: str) -> None:
        self._stream = stream
        self._context = context
        self._send_timeout = send_timeout
        self._ip = ip

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with trio.move_on_after(self._send_timeout) as stalled:
            await self._stream.send_all(data)
        if stalled.cancelled_caught:
            log.warning("event=send_timeout ip=%s transport=http", self._ip)
            await self._context.terminated.set()
            raise trio.BrokenResourceError("the peer stopped reading")

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._stream.receive_some(max_bytes)
        except BaseException:
            await self._context.terminated.set()  # reset, closed, timed out or cancelled
            raise
        if not data:
            await self._context.terminated.set()
        return data


async def serve(
    server: Server,
    asgi_app: Any,
    config: Any,
    trusts: TrustsProxy,
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``asgi_app`` with hypercorn ``config`` on its binds; ``started`` with the binds.

    ``trusted()`` gives the trusted proxies' networks as they are now (asked per connection).
    """
    from hypercorn.trio.tcp_server import TCPServer
    from hypercorn.trio.worker_context import WorkerContext
    from hypercorn.typing import ConnectionState
    from hypercorn.utils import repr_socket_addr, wrap_app

    app = wrap_app(asgi_app, config.wsgi_max_body_size, "asgi")
    #: One hypercorn context per open connection (see the module docstring).
    contexts: set[Any] = set()
    sockets = config.create_sockets()
    fixed_context = None  # a server without a TlsPair (tests): hypercorn's, made once
    if sockets.secure_sockets and getattr(server, "https_ssl_context", None) is None:
        fixed_context = config.create_ssl_context()
    listeners: list[tuple[trio.abc.Listener[Any], str]] = []
    binds: list[str] = []
    for sock, secure in [(s, True) for s in sockets.secure_sockets] + [
        (s, False) for s in sockets.insecure_sockets
    ]:
        sock.listen(config.backlog)
        listener: trio.abc.Listener[Any] = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        scheme = "https" if secure else "http"
        listeners.append((listener, scheme))
        binds.append(f"{scheme}://{repr_socket_addr(sock.family, sock.getsockname())}")

    admission = server.admission

    async def handle(scheme: str, stream: trio.abc.Stream) -> None:
        ip = _peer_ip(stream)
        if ip is None:
            await _refuse(stream, None)
            return
        ticket = admission.try_admit(ip, exempt=trusts(ip))
        if ticket is None:
            full = admission.full
            server.refusals.refused(scheme, "total" if full else "per_address", ip)
            canned = None if scheme == "https" else SERVER_FULL if full else TOO_MANY_FROM_YOU
            await _refuse(stream, canned)
            return
        if scheme == "https":  # the context in force now (a reload may have swapped it)
            ssl_context = fixed_context or server.https_ssl_context
            stream = trio.SSLStream(stream, ssl_context, server_side=True, https_compatible=True)
        context = WorkerContext(None)
        contexts.add(context)
        try:
            watched = _PeerWatch(stream, context, server.config.c2s.send_timeout, ip)
            await TCPServer(app, config, context, ConnectionState({}), watched)  # type: ignore[arg-type]
        except Exception as exc:  # one connection never ends the port
            # e.g. hypercorn's HTTP/2 on DATA for a stream it has closed (a PUT refused
            # before its body was read): the KeyError would end every connection here.
            log.warning("event=http_connection_failed ip=%s error=%s", ip, _leaf(exc))
        finally:
            contexts.discard(context)
            ticket.release()

    async with trio.open_nursery() as handlers:
        try:
            async with trio.open_nursery() as acceptors:
                for listener, scheme in listeners:
                    acceptors.start_soon(
                        functools.partial(
                            trio.serve_listeners,
                            functools.partial(handle, scheme),
                            [listener],
                            handler_nursery=handlers,
                        )
                    )
                task_status.started(binds)
        finally:
            # as hypercorn's worker does: idle keep-alive connections close now, the rest
            # get graceful_timeout to finish
            for context in list(contexts):
                await context.terminated.set()
            handlers.cancel_scope.deadline = trio.current_time() + config.graceful_timeout


def _leaf(exc: BaseException) -> str:
    """The first real error inside (nested) exception groups, as ``Type: text``."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {str(exc)[:200]!r}"
