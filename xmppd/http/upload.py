"""``/upload/``: the HTTP side of XEP-0363, on the server's HTTP port.

- ``PUT /upload/<file id>/<secret>/<name>``: the body of a slot (§6), streamed to a
  partial file beside the others and renamed into place only when every byte of the
  slot's size has come: a PUT cut mid-body leaves nothing, and nothing is served until
  the rename. 201 when stored; the refusals are :meth:`UploadService.check_put`'s (400,
  403, 404, 409, 410, 413, 415), 413 too for a body longer than the slot, 400 for a
  shorter one, 408 when the client stops sending for ``http.read_timeout`` seconds.
- ``GET``/``HEAD /upload/<file id>/<name>``: a stored file, streamed in 64 KiB chunks with
  the headers of :func:`xmppd.upload.policy.file_headers` (nosniff, CSP sandbox, content
  disposition, caching until it expires); 304 for its ETag; one byte range (206, 416
  past the end; RFC 9110 §14) for players that seek and downloads that resume.
- ``OPTIONS``: the CORS preflight for PUT from ``http.cors_origins`` (the widget and
  Converse.js upload from the forum's page); a PUT from another origin is a 403.

The name in the URL is only for people: the file is found by its id alone.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

import trio

from xmppd.services.upload import PARTIAL, UploadService
from xmppd.storage.upload import UploadRow
from xmppd.upload import policy

log = logging.getLogger("xmppd.http.upload")

CHUNK = 64 * 1024
PREFLIGHT = [
    ("access-control-allow-methods", "GET, HEAD, PUT, OPTIONS"),
    ("access-control-allow-headers", "Content-Type"),
    ("access-control-max-age", "86400"),
]
_REASONS = {
    201: b"stored\n",
    400: b"the body is not what the slot was for\n",
    403: b"not allowed\n",
    404: b"not found\n",
    405: b"method not allowed\n",
    408: b"request body not received in time\n",
    409: b"this slot was used already\n",
    410: b"this slot has expired: ask for a new one\n",
    413: b"the body is larger than the slot\n",
    415: b"the content type is not the slot's\n",
    416: b"that range is not in the file\n",
}


class UploadRoutes:
    """The ``/upload/`` routes of one server's HTTP app."""

    def __init__(self, service: UploadService, read_timeout: float) -> None:
        self.service = service
        self.read_timeout = read_timeout

    async def handle(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        rel: str,
        headers: dict[str, str],
        cors: list[tuple[str, str]] | None,
    ) -> None:
        """One request below ``/upload/`` (``rel``: the rest of the path); ``cors``:
        the CORS headers for an allowed origin, None for a refused one."""
        method = scope["method"]
        if method == "OPTIONS":
            if cors is None:
                await _plain(send, 403)
            else:
                await _plain(send, 204, cors + PREFLIGHT)
        elif method == "PUT":
            if cors is None:
                await _plain(send, 403)
            else:
                await _plain(send, await self._put(receive, rel, headers), cors)
        elif method in ("GET", "HEAD"):
            await self._get(send, rel, headers, cors or [], head=method == "HEAD")
        else:
            await _plain(send, 405, [("allow", "GET, HEAD, PUT, OPTIONS")])

    # ------------------------------------------------------------------- PUT
    async def _put(self, receive: Any, rel: str, headers: dict[str, str]) -> int:
        parts = rel.split("/", 2)
        if len(parts) < 2:
            return 404
        length_header = headers.get("content-length")
        try:
            length = int(length_header) if length_header is not None else None
        except ValueError:
            return 400
        service = self.service
        status, row = await service.check_put(
            parts[0], parts[1], length, headers.get("content-type")
        )
        if row is None:
            shown = parts[0] if policy.FILE_ID.fullmatch(parts[0]) else "-"  # no odd bytes in logs
            log.info("event=upload_put_refused file=%s status=%d", shown, status)
            return status
        final = service.path_of(row.file_id)
        partial = final.with_name(row.file_id + PARTIAL)
        service.receiving.add(row.file_id)  # no await since check_put looked: one PUT at a time
        status = 500
        try:
            status = await self._receive(receive, partial, row.size)
            if status == 201:
                os.replace(partial, final)
                if not await service.stored(row):
                    final.unlink(missing_ok=True)
                    status = 409
        finally:
            service.receiving.discard(row.file_id)
            if status != 201:
                partial.unlink(missing_ok=True)
                log.info("event=upload_put_failed file=%s status=%d", row.file_id, status)
        return status

    async def _receive(self, receive: Any, partial: os.PathLike[str], size: int) -> int:
        """Stream the body to ``partial``; 201 when exactly ``size`` bytes came."""
        written = 0
        async with await trio.open_file(partial, "xb") as out:
            while True:
                message = None
                with trio.move_on_after(self.read_timeout):
                    message = await receive()
                if message is None:
                    return 408
                if message["type"] == "http.disconnect":
                    return 400
                chunk = message.get("body", b"")
                written += len(chunk)
                if written > size:
                    return 413
                if chunk:
                    await out.write(chunk)
                if not message.get("more_body", False):
                    break
        return 201 if written == size else 400

    # --------------------------------------------------------------- GET/HEAD
    async def _get(
        self,
        send: Any,
        rel: str,
        headers: dict[str, str],
        cors: list[tuple[str, str]],
        *,
        head: bool,
    ) -> None:
        file_id = rel.split("/", 1)[0]
        row = await self.service.lookup(file_id)
        if row is None:
            await _plain(send, 404, cors)
            return
        try:
            source = await trio.open_file(self.service.path_of(file_id), "rb")
        except OSError:
            await _plain(send, 404, cors)
            return
        async with source:
            etag = f'"{row.file_id}"'
            extra = policy.file_headers(
                row.content_type, row.filename, row.size, etag, self._max_age(row)
            )
            if etag in (headers.get("if-none-match") or ""):
                keep = [h for h in extra if h[0] in ("etag", "cache-control")]
                await _start(send, 304, keep + cors)
                await send({"type": "http.response.body", "body": b""})
                return
            status, first, left = 200, 0, row.size
            wanted = policy.byte_range(headers.get("range"), row.size)
            if wanted is not None and headers.get("if-range", etag) != etag:
                wanted = None  # RFC 9110 §13.1.5: another version: the whole file
            if wanted == policy.UNSATISFIABLE:
                await _plain(send, 416, [("content-range", f"bytes */{row.size}"), *cors])
                return
            if wanted is not None:
                status, (first, last) = 206, wanted
                left = last - first + 1
                extra = [h for h in extra if h[0] != "content-length"] + [
                    ("content-length", str(left)),
                    ("content-range", f"bytes {first}-{last}/{row.size}"),
                ]
                await source.seek(first)
            await _start(send, status, extra + cors)
            if head:
                await send({"type": "http.response.body", "body": b""})
                return
            while left > 0:
                chunk = await source.read(min(CHUNK, left))
                if not chunk:
                    break  # cannot happen for a complete file; end the body anyway
                left -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
            if left > 0:
                await send({"type": "http.response.body", "body": b""})

    def _max_age(self, row: UploadRow) -> int:
        """Seconds until the file expires (a year when files never do)."""
        days = self.service.config.expire_days
        if not days or row.stored_at is None:
            return 365 * 86400
        age = datetime.now(UTC).replace(tzinfo=None) - row.stored_at
        return max(0, int(days * 86400 - age.total_seconds()))


async def _start(send: Any, status: int, headers: list[tuple[str, str]]) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})


async def _plain(send: Any, status: int, extra: list[tuple[str, str]] | None = None) -> None:
    """A short text answer (none for 204)."""
    body = b"" if status == 204 else _REASONS.get(status, b"error\n")
    headers = [("x-content-type-options", "nosniff"), ("cache-control", "no-store")]
    if status != 204:
        headers += [("content-type", "text/plain; charset=utf-8"),
                    ("content-length", str(len(body)))]  # fmt: skip
    await _start(send, status, headers + (extra or []))
    await send({"type": "http.response.body", "body": body})
