"""A deliberately dumb XMPP peer on a raw socket, for feeding a real server bad input."""

from __future__ import annotations

import base64
import socket
import ssl
import time

HEADER = (
    b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
    b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)


class RawClient:
    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        timeout: float = 5.0,
        source: str | None = None,
        rcvbuf: int | None = None,
    ) -> None:
        """``source``: the local address to connect from (any 127.x.y.z works on Linux);
        ``rcvbuf``: a small receive buffer (set before connecting, so the TCP window
        stays small), for a peer that stops reading."""
        bind = (source, 0) if source else None
        if rcvbuf is None:
            self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
                (host, port), timeout, source_address=bind
            )
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if bind:
                self.sock.bind(bind)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        self.sock.settimeout(timeout)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until(self, marker: bytes, timeout: float = 5.0) -> bytes:
        """Read until ``marker`` is in the buffer (or the peer closes); return all so far."""
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{marker!r} not received; got {self.buffer[-500:]!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        return self.buffer

    def read_to_close(self, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"connection not closed; got {self.buffer[-500:]!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return self.buffer
            if not chunk:
                return self.buffer
            self.buffer += chunk

    def open_stream(self) -> bytes:
        self.send(HEADER)
        return self.read_until(b"</stream:features>")

    def starttls(self) -> None:
        self.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until(b"<proceed")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.buffer = b""

    def login(self, user: str, password: str, resource: str = "raw") -> None:
        """STARTTLS-less PLAIN login (loopback exemption) and bind."""
        self.open_stream()
        token = base64.b64encode(f"\0{user}\0{password}".encode())
        self.send(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
            + token
            + b"</auth>"
        )
        self.read_until(b"<success")
        self.buffer = b""
        self.open_stream()
        self.buffer = b""
        self.send(
            b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>"
            + resource.encode()
            + b"</resource></bind></iq>"
        )
        self.read_until(b"</iq>")
        self.buffer = b""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
