"""The widget's files under ``/chat/``: safe path resolution, content types, caching.

Only regular files inside the root are served: ``..``, absolute paths, backslashes,
NUL bytes, dot-files and symlinks leading outside the root are all a 404. ``index.html``
is revalidated on every load (so a new widget release is picked up at once); other
files are cached for an hour and revalidated by ``ETag``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from xmppd.web import DIST_DIR

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".txt": "text/plain; charset=utf-8",
    ".wasm": "application/wasm",
}
MAX_FILE = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str
    cache_control: str


def default_root() -> Path:
    """The built widget (``xmppd.web.DIST_DIR``: ``npm ci && node build.mjs`` makes it)."""
    return DIST_DIR


def resolve(root: Path, rel: str) -> Path | None:
    """The file ``rel`` (URL path below ``/chat/``, already percent-decoded) or None."""
    if "\x00" in rel or "\\" in rel:
        return None
    parts = [p for p in rel.split("/") if p]
    if any(p in (".", "..") or p.startswith(".") for p in parts):
        return None
    if not parts:
        parts = ["index.html"]
    try:
        root = root.resolve(strict=True)
        path = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if path.is_dir():
        path = path / "index.html"
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


_cache: dict[Path, tuple[tuple[int, int], StaticFile]] = {}
_CACHE_MAX = 256


def load(path: Path) -> StaticFile | None:
    """The file, read and hashed once per (mtime, size): page loads cost a ``stat``."""
    try:
        stat = path.stat()
        if stat.st_size > MAX_FILE:
            return None
        key = (stat.st_mtime_ns, stat.st_size)
        cached = _cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        body = path.read_bytes()
    except OSError:
        return None
    ctype = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    etag = '"%s"' % hashlib.blake2b(body, digest_size=12).hexdigest()
    cache = "no-cache" if path.name == "index.html" else "public, max-age=3600"
    item = StaticFile(body, ctype, etag, cache)
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[path] = (key, item)
    return item
