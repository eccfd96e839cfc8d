"""IRC lines (RFC 1459/2812 + IRCv3 message tags), sans-IO.

Bytes in, :class:`Line` objects out, and back. Nothing here reads a socket or a clock, so
every odd line a server can send is a unit test. Undecodable bytes never raise: UTF-8 is
tried first and latin-1 (which accepts every byte) is the fallback, as IRC has no declared
encoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: RFC 1459 §2.3: a line is at most 512 bytes including the CR-LF, tags excluded.
MAX_LINE = 512
#: IRCv3 message-tags: the tag part may add up to 8191 bytes (with '@' and the space).
MAX_TAGS = 8191
#: Anything longer than this without a newline is garbage and is discarded.
HARD_LIMIT = MAX_LINE + MAX_TAGS + 1

_TAG_ESCAPES = {";": r"\:", " ": r"\s", "\\": "\\\\", "\r": r"\r", "\n": r"\n"}
_TAG_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


class LineError(ValueError):
    """A line that cannot be parsed (empty, or no command)."""


def decode(raw: bytes) -> str:
    """UTF-8 if valid, else latin-1: never raises (the seed's bot died on exactly this)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def unescape_tag(value: str) -> str:
    """IRCv3 tag value unescaping (``\\:`` is ``;``, ``\\s`` a space, …)."""
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            if i + 1 < len(value):
                nxt = value[i + 1]
                out.append(_TAG_UNESCAPES.get(nxt, nxt))
                i += 2
                continue
            i += 1  # a trailing lone backslash is dropped (IRCv3)
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def escape_tag(value: str) -> str:
    return "".join(_TAG_ESCAPES.get(ch, ch) for ch in value)


@dataclass
class Line:
    """One parsed IRC line. ``params`` includes the trailing parameter as its last item."""

    command: str
    params: list[str] = field(default_factory=list)
    prefix: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def nick(self) -> str | None:
        """The nick of a ``nick!user@host`` prefix (or the server name)."""
        if self.prefix is None:
            return None
        return self.prefix.split("!", 1)[0].split("@", 1)[0]

    def param(self, index: int, default: str = "") -> str:
        return self.params[index] if len(self.params) > index else default


def parse(raw: bytes | str) -> Line:
    """Parse one line without its CR-LF; raise :class:`LineError` if it has no command."""
    text = decode(raw) if isinstance(raw, bytes) else raw
    text = text.rstrip("\r\n")
    tags: dict[str, str] = {}
    prefix: str | None = None
    if text.startswith("@"):
        tag_part, _, text = text[1:].partition(" ")
        for item in tag_part.split(";"):
            if not item:
                continue
            key, _, value = item.partition("=")
            tags[key] = unescape_tag(value)
    text = text.lstrip(" ")
    if text.startswith(":"):
        prefix, _, text = text[1:].partition(" ")
        text = text.lstrip(" ")
    trailing: str | None = None
    if " :" in text:
        text, trailing = text.split(" :", 1)
    elif text.startswith(":"):
        trailing, text = text[1:], ""
    params = [p for p in text.split(" ") if p]
    if not params:
        raise LineError("no command")
    command = params.pop(0).upper()
    if trailing is not None:
        params.append(trailing)
    return Line(command, params, prefix, tags)


def serialize(line: Line) -> bytes:
    """Bytes with CR-LF. CR, LF and NUL in parameters are replaced by spaces: a parameter
    must never smuggle a second command onto the wire."""
    parts: list[str] = []
    if line.tags:
        parts.append(
            "@" + ";".join(k if v == "" else f"{k}={escape_tag(v)}" for k, v in line.tags.items())
        )
    if line.prefix:
        parts.append(":" + line.prefix)
    parts.append(line.command)
    params = [_clean(p) for p in line.params]
    for i, p in enumerate(params):
        last = i == len(params) - 1
        if last and (p == "" or " " in p or p.startswith(":")):
            parts.append(":" + p)
        else:
            parts.append(p)
    return (" ".join(parts) + "\r\n").encode("utf-8")


def _clean(param: str) -> str:
    return param.replace("\r", " ").replace("\n", " ").replace("\0", " ")


def make(command: str, *params: str) -> bytes:
    return serialize(Line(command, list(params)))


class LineBuffer:
    """Splits a byte stream into lines; an overlong line is discarded, not buffered forever.

    ``feed`` returns the complete lines (without CR-LF) and counts discarded ones in
    ``dropped`` so the shell can log them. A partial line at EOF is simply never returned
    (the server closed mid-line: the fragment is not a command).
    """

    def __init__(self, limit: int = HARD_LIMIT) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._skipping = False
        self.dropped = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        lines: list[bytes] = []
        while True:
            idx = self._buf.find(b"\n")
            if idx < 0:
                if len(self._buf) > self.limit:
                    if not self._skipping:
                        self.dropped += 1
                    self._skipping = True
                    self._buf.clear()
                break
            raw = bytes(self._buf[:idx])
            del self._buf[: idx + 1]
            if self._skipping:
                self._skipping = False
                continue
            if len(raw) > self.limit:
                self.dropped += 1
                continue
            raw = raw.rstrip(b"\r")
            if raw.strip():
                lines.append(raw)
        return lines

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line (a server closing now closed mid-line)."""
        return len(self._buf)
