"""What a slot may be for, what a stored file is called and how it is served (pure).

XEP-0363 §4 (the ``<request/>``), §5 (its errors) and §8 (unguessable URLs); the serving
rules are ours: an uploaded file must never run script on the origin it is served from
(the forum's, when ``upload.public_url`` is not a host of its own), so every answer
carries ``X-Content-Type-Options: nosniff`` and ``Content-Security-Policy: sandbox`` (the
document gets a unique origin and no script), only media and a few plain document types
keep their declared type (HTML, SVG, XML, script and anything unknown are served as
``application/octet-stream``), and only plain raster images are ``inline``: everything
else is an ``attachment``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from lxml import etree

from xmppd.xml.errors import StanzaError

NS = "urn:xmpp:http:upload:0"
REQUEST = "{%s}request" % NS
#: A sanitised file name's most characters (the extension is kept when cut).
NAME_MAX = 100
#: A content type's most characters (RFC 6838 §4.2: 127 per part).
TYPE_MAX = 255
#: The file part of the URLs: ``secrets.token_urlsafe(18)``; the PUT secret: ``(32)``.
FILE_ID = re.compile(r"[A-Za-z0-9_-]{24}")
PUT_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")
OCTET_STREAM = "application/octet-stream"
#: Raster images every browser shows without running anything: these are ``inline``.
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif"})
#: Types served as they were declared besides ``image/*``, ``audio/*`` and ``video/*``
#: (XML-based ones excepted). Everything else goes out as octet-stream: a denylist would
#: miss one of the many names browsers run as script or style (``text/x-javascript``,
#: ``application/x-javascript``, ``text/css``…), and with nosniff octet-stream runs nowhere.
_PLAIN_TYPES = frozenset(
    {
        "text/plain",
        "text/csv",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/x-7z-compressed",
        "application/x-tar",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        OCTET_STREAM,
    }
)
_PLAIN_PREFIXES = (
    "application/vnd.openxmlformats-officedocument.",
    "application/vnd.oasis.opendocument.",
)
_RESTRICTED_NAME = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"({_RESTRICTED_NAME})/({_RESTRICTED_NAME})")
#: Characters kept in a file name besides letters and digits (any script).
_NAME_PUNCT = frozenset("._-+()[],")
#: Served with every file: a unique origin without script, nothing loaded by it.
CSP = "sandbox; default-src 'none'"


@dataclass(frozen=True, slots=True)
class SlotRequest:
    """A parsed ``<request filename size content-type/>`` (§4)."""

    filename: str
    size: int
    #: Normalised; "" when the client named none (then the PUT may send any, §6, and the
    #: file is served as octet-stream).
    content_type: str


def sanitize_filename(raw: str) -> str:
    """A harmless display name for ``raw``: its last path part (``/`` or ``\\``), NFC,
    no control or format characters (NUL, bidi overrides), letters, digits and a few
    marks kept (the rest become ``_``), no leading dot, at most :data:`NAME_MAX`
    characters with the extension kept; ``file`` if nothing is left. It is only shown
    (URL and ``Content-Disposition``): the stored path comes from the token alone."""
    text = unicodedata.normalize("NFKC", raw)
    text = re.split(r"[/\\]", text)[-1]
    out = []
    for char in text:
        if unicodedata.category(char)[0] == "C":
            continue
        out.append(char if char.isalnum() or char in _NAME_PUNCT else "_")
    name = re.sub(r"_{2,}", "_", "".join(out)).strip("._- ")
    if len(name) > NAME_MAX:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: NAME_MAX - len(ext) - 1].rstrip("._-") + "." + ext
        else:
            name = name[:NAME_MAX]
    return name or "file"


def normalise_type(raw: str | None) -> str:
    """``type/subtype`` lower-cased without parameters; absent: octet-stream (§6 MAY);
    not a media type (RFC 6838 §4.2): :class:`ValueError`."""
    if raw is None or not raw.strip():
        return OCTET_STREAM
    if len(raw) > TYPE_MAX:
        raise ValueError("content type too long")
    base = raw.split(";", 1)[0].strip().lower()
    if _MEDIA_TYPE.fullmatch(base) is None:
        raise ValueError(f"not a media type: {raw[:80]!r}")
    return base


def parse_request(request: etree._Element, max_file_size: int) -> SlotRequest:
    """The slot asked for, or the §5 error: ``bad-request`` for a missing or odd
    attribute, ``not-acceptable`` with ``<file-too-large><max-file-size/>`` past the
    limit."""
    filename = request.get("filename")
    if not filename or not filename.strip():
        raise StanzaError("bad-request", "a slot request needs a filename")
    try:
        size = int(request.get("size", ""))
    except ValueError:
        raise StanzaError("bad-request", "size must be a number of bytes") from None
    if size < 1:
        raise StanzaError("bad-request", "size must be at least 1")
    if size > max_file_size:
        raise too_large(max_file_size)
    raw_type = request.get("content-type")
    try:
        content_type = normalise_type(raw_type) if raw_type is not None else ""
    except ValueError as exc:
        raise StanzaError("bad-request", str(exc)) from None
    return SlotRequest(sanitize_filename(filename), size, content_type)


def too_large(max_file_size: int) -> StanzaError:
    """§5: ``not-acceptable`` with the limit in ``<file-too-large/>``."""
    app = etree.Element("{%s}file-too-large" % NS, nsmap={None: NS})
    etree.SubElement(app, "{%s}max-file-size" % NS).text = str(max_file_size)
    text = f"File too large. The maximum file size is {max_file_size} bytes"
    return StanzaError("not-acceptable", text, app=app)


def try_later(text: str, when: datetime | None) -> StanzaError:
    """§5: a temporary refusal (quota, request rate): ``resource-constraint`` (type
    wait), with ``<retry stamp/>`` (XEP-0082, UTC) when we know when."""
    app = None
    if when is not None:
        app = etree.Element("{%s}retry" % NS, nsmap={None: NS})
        app.set("stamp", when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return StanzaError("resource-constraint", text, type_="wait", app=app)


def url_path(file_id: str, filename: str, secret: str | None = None) -> str:
    """``<file_id>/<name>`` (GET) or ``<file_id>/<secret>/<name>`` (PUT), quoted."""
    name = quote(filename, safe="")
    return f"{file_id}/{secret}/{name}" if secret else f"{file_id}/{name}"


#: A ``Range`` header that no part of the file satisfies (answered 416).
UNSATISFIABLE = (-1, -1)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """RFC 9110 §14.1.2: the one byte range ``bytes=a-b``, ``a-`` or ``-n`` asks for, as
    (first, last) inclusive; None for the whole file (no header, several ranges, another
    unit, or a malformed one: §14.2 lets a server ignore it), :data:`UNSATISFIABLE` when
    it starts past the end."""
    if not header or size < 1:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash or not (first_text + last_text).isdigit() or len(first_text + last_text) > 18:
        return None
    if not first_text:  # the last n bytes
        count = int(last_text)
        return (max(0, size - count), size - 1) if count else UNSATISFIABLE
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        return UNSATISFIABLE
    return first, min(last, size - 1)


def served_type(content_type: str) -> str:
    """The ``Content-Type`` a stored file goes out with: media and a few plain document
    types as declared, anything else (HTML, SVG, XML, script, style…) as bytes."""
    major, _, minor = content_type.partition("/")
    if minor == "xml" or minor.endswith("+xml"):  # SVG, XHTML, XSLT… may hold script
        return OCTET_STREAM
    if major in ("image", "audio", "video") or content_type.startswith(_PLAIN_PREFIXES):
        return content_type
    if content_type in _PLAIN_TYPES:
        return content_type + ("; charset=utf-8" if major == "text" else "")
    return OCTET_STREAM


def disposition(content_type: str, filename: str) -> str:
    """RFC 6266: ``inline`` for plain raster images, ``attachment`` for the rest, the
    name as an ASCII fallback and as ``filename*`` (RFC 8187)."""
    kind = "inline" if content_type in INLINE_IMAGES else "attachment"
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_"
                       for c in filename)  # fmt: skip
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def file_headers(
    content_type: str, filename: str, size: int, etag: str, max_age: int
) -> list[tuple[str, str]]:
    """Every header a GET/HEAD of a stored file is answered with (besides CORS)."""
    return [
        ("content-type", served_type(content_type)),
        ("content-length", str(size)),
        ("x-content-type-options", "nosniff"),
        ("content-security-policy", CSP),
        ("content-disposition", disposition(content_type, filename)),
        ("cache-control", f"public, max-age={max_age}, immutable"),
        ("etag", etag),
        ("referrer-policy", "no-referrer"),
        ("accept-ranges", "bytes"),
        ("cross-origin-resource-policy", "cross-origin"),
    ]


def disco_form(max_file_size: int) -> etree._Element:
    """§2: the XEP-0128 form with ``max-file-size`` for the service's disco#info."""
    form = etree.Element("{jabber:x:data}x", type="result", nsmap={None: "jabber:x:data"})
    for var, value, kind in (
        ("FORM_TYPE", NS, "hidden"),
        ("max-file-size", str(max_file_size), None),
    ):
        field = etree.SubElement(form, "{jabber:x:data}field", var=var)
        if kind:
            field.set("type", kind)
        etree.SubElement(field, "{jabber:x:data}value").text = value
    return form
