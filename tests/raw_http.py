"""HTTP/1.1 on a bare socket, for tests that need control an HTTP library hides: the source
address, one connection reused on purpose, a body dripped in byte by byte, a refusal
sent before the request was even read. Responses are parsed with h11.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import h11


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def connect(port: int, source: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` from ``source`` (any 127/8 address works)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout, (source, 0))
    sock.settimeout(timeout)
    return sock


def request(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    content_type: str = "text/xml; charset=utf-8",
    length: int | None = None,
) -> bytes:
    """The bytes of one request; ``length`` announces a different Content-Length."""
    head = f"{method} {path} HTTP/1.1\r\nhost: localhost\r\n"
    if method == "POST":
        size = len(body) if length is None else length
        head += f"content-type: {content_type}\r\ncontent-length: {size}\r\n"
    return (head + "\r\n").encode() + body


class Http:
    """One client connection; :meth:`exchange` sends a request and reads its response."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = connect(port, source, timeout)
        self.conn = h11.Connection(h11.CLIENT)

    def close(self) -> None:
        self.sock.close()

    def exchange(self, method: str, path: str, body: bytes = b"", timeout: float = 5.0) -> Response:
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        headers = [("host", "localhost")]
        if method == "POST":
            headers += [("content-type", "text/xml; charset=utf-8")]
            headers += [("content-length", str(len(body)))]
        data = self.conn.send(h11.Request(method=method, target=path, headers=headers))
        data += self.conn.send(h11.Data(data=body)) if body else b""
        data += self.conn.send(h11.EndOfMessage())
        self.sock.sendall(data)
        return self.response(timeout)

    def response(self, timeout: float = 5.0) -> Response:
        """Read one whole response (TimeoutError if it does not come in time)."""
        deadline = time.monotonic() + timeout
        status, headers, body = 0, {}, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no complete response in time")
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(65536)
                except TimeoutError:
                    raise TimeoutError("no complete response in time") from None
                self.conn.receive_data(chunk)
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return Response(status, headers, body)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("closed before a complete response")


def refused_status(sock: socket.socket, timeout: float = 5.0) -> int | None:
    """What a connection sent before closing, unasked: its status line's code, or ``None``
    when it closed (or was reset) silently. TimeoutError if it stays open."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    if not data.startswith(b"HTTP/1.1 "):
        return None
    return int(data.split(b" ", 2)[1])


def is_closed(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer closes ``sock`` within ``timeout`` (anything it sends is skipped)."""
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False
