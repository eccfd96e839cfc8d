"""Who may switch an HTTP/1.1 connection to HTTP/2 with ``Upgrade: h2c``.

hypercorn answers ``Upgrade: h2c`` on any HTTP/1.1 request (even without ``Connection:
Upgrade`` or ``HTTP2-Settings``, even over TLS) with 101 and speaks HTTP/2 from then on, and
has no setting to stop it. Behind a reverse proxy that passes ``Upgrade`` on, that turns the
proxy's connection into a tunnel past the proxy's own rules ("h2c smuggling").

:func:`install` wraps hypercorn's per-request protocol check once per process; a hypercorn
``Config`` carrying ``xmppd_h2c_upgrade`` (a ``(client, headers) -> bool``) then upgrades
only when that says yes, and never over TLS (RFC 9113 §3.1: h2c is cleartext only). A
refused upgrade is answered as the HTTP/1.1 request it also is (RFC 9110 §7.8 lets a server
ignore ``Upgrade``). Prior-knowledge HTTP/2 is not touched here (the app answers 505 when
``http.h2c`` is off).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: The ``Config`` attribute :func:`install` looks for.
ATTRIBUTE = "xmppd_h2c_upgrade"

Headers = list[tuple[bytes, bytes]]
UpgradeCheck = Callable[[tuple[str, int] | None, Headers], bool]


def asks_h2c(headers: Headers) -> bool:
    """hypercorn's own test: the last ``Upgrade`` header is ``h2c`` and there is no body."""
    upgrade = ""
    has_body = False
    for name, value in headers:
        key = name.decode("latin-1").strip().lower()
        if key == "upgrade":
            upgrade = value.decode("latin-1").strip()
        elif key in ("content-length", "transfer-encoding"):
            has_body = True
    return upgrade.lower() == "h2c" and not has_body


def install() -> None:
    """Wrap ``H11Protocol._check_protocol`` (idempotent). Fails loudly if hypercorn no
    longer has it: serving with an h2c switch that does nothing would reopen the tunnel."""
    from hypercorn.protocol.h11 import H11Protocol

    original = getattr(H11Protocol, "_check_protocol", None)
    if original is None:
        raise RuntimeError("this hypercorn has no H11Protocol._check_protocol: h2c cannot be gated")
    if getattr(original, "_xmppd_gated", False):
        return

    async def check_protocol(self: Any, event: Any) -> None:
        allowed: UpgradeCheck | None = getattr(self.config, ATTRIBUTE, None)
        headers = list(event.headers)
        if allowed is not None and asks_h2c(headers):
            if self.ssl or not allowed(self.client, headers):
                return  # served as HTTP/1.1
        await original(self, event)

    check_protocol._xmppd_gated = True  # type: ignore[attr-defined]
    H11Protocol._check_protocol = check_protocol  # type: ignore[method-assign]
