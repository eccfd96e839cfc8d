"""Which browser origins may call us (CORS), from the ``[http] cors_origins`` allow-list.

Same-origin requests (``Origin`` equal to the scheme and ``Host`` the request came
to) are always allowed; ``*`` in the list allows every origin.
"""

from __future__ import annotations

from collections.abc import Iterable

PREFLIGHT_HEADERS = [
    ("access-control-allow-methods", "GET, POST, OPTIONS"),
    ("access-control-allow-headers", "Content-Type"),
    ("access-control-max-age", "86400"),
]


class OriginPolicy:
    __slots__ = ("_allowed", "_any")

    def __init__(self, origins: Iterable[str]) -> None:
        items = [o.strip().lower() for o in origins]
        self._any = "*" in items
        self._allowed = frozenset(o for o in items if o != "*")

    def allowed(self, origin: str | None, scheme: str, host: str | None) -> bool:
        """No ``Origin`` (not a browser cross-site call) is allowed; else the list decides."""
        if origin is None:
            return True
        origin = origin.strip().lower()
        if host and origin == f"{scheme}://{host.lower()}":
            return True
        return self._any or origin in self._allowed

    def trusted_for_cookies(self, origin: str | None, scheme: str, host: str | None) -> bool:
        """Same origin or explicitly listed: ``*`` never lets a page use our cookies."""
        if origin is None:
            return False
        origin = origin.strip().lower()
        return bool(host and origin == f"{scheme}://{host.lower()}") or origin in self._allowed

    @staticmethod
    def response_headers(origin: str | None) -> list[tuple[str, str]]:
        if origin is None:
            return []
        return [("access-control-allow-origin", origin), ("vary", "Origin")]
