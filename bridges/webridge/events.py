"""Forum events: datagram -> validated event -> one line of room text (sans-IO).

A datagram is either a JSON object ``{"type": "reply", "who": …, "forum": …, "title": …,
"url": …}`` or plain UTF-8 text (a raw message, what the old ``saxSay`` wrote). Every
wording lives in :data:`TEMPLATES`, the one table that replaces the old maze of magic-number
comparisons (seed: "a switch statement over symbolic values … feeding simple invocations of
sprintf").

No HTML entities reach the room: the forum still emits some legacy ``&amp;``-style strings,
so every field is decoded once with :func:`html.unescape` (presentation escaping is the
client's job). Characters XML cannot carry are removed so a datagram can never break the
component stream.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass

#: Datagrams of this many bytes or more are refused (the socket reads at most this much).
MAX_DATAGRAM = 65536

#: type -> variants of (required fields, template), most specific first. The first variant
#: whose fields are all present (non-empty) renders the event.
TEMPLATES: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "new_topic": (
        (("who", "forum", "title", "url"), "{who} started a new topic [{forum}] {title}: {url}"),
        (("who", "title", "url"), "{who} started a new topic {title}: {url}"),
    ),
    "reply": (
        (("who", "forum", "title", "url"), "{who} replied to [{forum}] {title}: {url}"),
        (("who", "title", "url"), "{who} replied to {title}: {url}"),
    ),
    "edit": (
        (("who", "forum", "title", "url"), "{who} edited a post in [{forum}] {title}: {url}"),
        (("who", "title", "url"), "{who} edited a post in {title}: {url}"),
    ),
    "new_member": (
        (("who", "url"), "{who} just registered. Welcome! {url}"),
        (("who",), "{who} just registered. Welcome!"),
    ),
    "announcement": (
        (("title", "url"), "Announcement: {title}: {url}"),
        (("title",), "Announcement: {title}"),
        (("text",), "Announcement: {text}"),
    ),
    "say": (
        (("who", "text"), "{who}: {text}"),
        (("text",), "{text}"),
    ),
    "raw": ((("text",), "{text}"),),
}

#: Fields a template may use; anything else in a datagram is ignored.
FIELDS = frozenset(f for variants in TEMPLATES.values() for fs, _ in variants for f in fs)
#: Fields that are one line (titles, names, links): whitespace runs become one space.
ONE_LINE = frozenset({"who", "forum", "title", "url"})
#: Fields cut at ``field_max_length`` (a link is never cut: it would lead elsewhere).
CAPPED = frozenset({"who", "forum", "title"})

# XML 1.0 Char minus the C0 controls other than tab/newline; also lone surrogates (JSON
# "\ud800" escapes decode to them) and the noncharacters U+FFFE/U+FFFF.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_WHITESPACE = re.compile(r"\s+")
ELLIPSIS = "…"


class BadDatagram(ValueError):
    """A datagram that is dropped; ``reason`` is a short token for the log line."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Event:
    """A validated forum event: its symbolic type and cleaned fields."""

    type: str
    fields: dict[str, str]


def clean(value: str, *, one_line: bool) -> str:
    """Decode legacy HTML entities once, drop non-XML characters, trim."""
    text = _NOT_XML.sub("", html.unescape(value))
    if one_line:
        text = _WHITESPACE.sub(" ", text)
    return text.strip()


def truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters; a cut ends in an ellipsis."""
    if limit <= 0 or len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + ELLIPSIS


def parse_datagram(data: bytes, *, max_size: int = MAX_DATAGRAM) -> Event:
    """Bytes from the socket -> :class:`Event`; raises :class:`BadDatagram`.

    A payload whose first non-blank character is ``{`` or ``[`` is JSON and must be an
    object with a known ``type``; anything else is raw text.
    """
    if len(data) >= max_size:
        raise BadDatagram("oversized", f"{len(data)} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadDatagram("not_utf8", f"byte {exc.start}") from None
    stripped = text.strip()
    if not stripped:
        raise BadDatagram("empty")
    if stripped[0] not in "{[":
        return make_event({"type": "raw", "text": text})
    try:
        obj = json.loads(stripped)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BadDatagram("not_json", str(exc)[:80]) from None
    if not isinstance(obj, dict):
        raise BadDatagram("not_object", type(obj).__name__)
    return make_event(obj)


def make_event(obj: dict[str, object]) -> Event:
    """Validate a decoded JSON object; raises :class:`BadDatagram`."""
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise BadDatagram("no_type")
    if kind not in TEMPLATES:
        raise BadDatagram("unknown_type", kind[:40])
    fields: dict[str, str] = {}
    for name in FIELDS:
        value = obj.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise BadDatagram("bad_field", name)
        cleaned = clean(str(value), one_line=name in ONE_LINE)
        if cleaned:
            fields[name] = cleaned
    if _variant(kind, fields) is None:
        needed = TEMPLATES[kind][-1][0]
        missing = ",".join(f for f in needed if f not in fields)
        raise BadDatagram("missing_fields", f"{kind} needs {missing}")
    return Event(kind, fields)


def _variant(kind: str, fields: dict[str, str]) -> str | None:
    for required, template in TEMPLATES[kind]:
        if all(f in fields for f in required):
            return template
    return None


def render(event: Event, *, max_length: int = 1000, field_max_length: int = 300) -> str:
    """The room text for ``event``: its template with each field capped at
    ``field_max_length`` characters and the whole line at ``max_length``."""
    template = _variant(event.type, event.fields)
    if template is None:  # make_event guarantees one; keep render total anyway
        raise BadDatagram("missing_fields", event.type)
    values = {
        k: truncate(v, field_max_length) if k in CAPPED else v for k, v in event.fields.items()
    }
    return truncate(template.format_map(values), max_length)
