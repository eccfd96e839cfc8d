"""A strict reader of Erlang term *text*, as ``io:format("~p.~n")`` and mnesia dumps write it.

ejabberd keeps what the import needs as Erlang terms printed to text: ``ejabberdctl dump``
writes one ``~p`` term per record, and the SQL schema keeps a room's options as
``io_lib:print`` text in ``muc_room.opts``. No well-kept Python library reads that text:
PyPI's ``erlang-py`` and Pyrlang's ``term`` decode the binary external format (what
``term_to_binary`` makes), not the printed syntax, and ``erl-terms`` (last release 2017, a
2 kB regex toy) has no binaries, maps, escapes or error positions. So this is hand-written,
small and strict: it reads data, never evaluates anything, and says where text is wrong.

How terms come out in Python:

- atom → :class:`Atom` (a ``str``: ``Atom("true") == "true"``); integer → ``int`` (any size,
  ``16#FF`` too); float → ``float``; ``$a`` → its code (``97``), as in Erlang;
- binary → ``bytes`` (``<<"..."/utf8>>`` encoded to UTF-8; bit strings are refused);
- ``"..."`` → :class:`Charlist` (a ``list`` of ints: in Erlang a string *is* that list, so
  ``Charlist([104]) == [104]``); use :func:`text` for a ``str``;
- tuple → ``tuple`` (records are tuples); list → ``list``; ``[a|b]`` → :class:`ImproperList`;
- map → :class:`Map` (pairs in written order: keys may be lists, which Python cannot hash);
- pid, port, reference, fun (``<0.1.0>``, ``#Port<0.5>``, ``#Ref<...>``, ``#Fun<...>``) →
  :class:`Opaque` holding the text: such values mean nothing outside the node that made them.

Encoding: ``~p`` on a file opened without ``{encoding, utf8}`` writes each character as one
byte and prints a binary's bytes as Latin-1 characters (``<<"h\\303\\251">>`` or raw bytes).
So read such text as Latin-1 (a ``bytes`` argument is decoded so); a binary's characters
must then be ≤ 255 unless marked ``/utf8``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

__all__ = [
    "Atom",
    "Charlist",
    "ErlangSyntaxError",
    "ImproperList",
    "Map",
    "Opaque",
    "format_term",
    "iter_term_texts",
    "iter_terms",
    "parse_term",
    "text",
]


class Atom(str):
    """An Erlang atom; compares equal to the ``str`` of its name."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"


class Charlist(list):  # type: ignore[type-arg]
    """A list written as a ``"string"``: the same term as the list of its codes."""

    __slots__ = ()

    def text(self) -> str:
        return text(self)


@dataclass(frozen=True, slots=True)
class ImproperList:
    """``[a, b | tail]`` where ``tail`` is not a list."""

    items: tuple[Any, ...]
    tail: Any


@dataclass(frozen=True, slots=True)
class Map:
    """``#{k => v}``; ``pairs`` in the order written (``~p`` sorts them)."""

    pairs: tuple[tuple[Any, Any], ...]

    def get(self, key: Any, default: Any = None) -> Any:
        for k, v in self.pairs:
            if k == key:
                return v
        return default


@dataclass(frozen=True, slots=True)
class Opaque:
    """A pid, port, reference or fun as printed; kept only to be reported or skipped."""

    text: str


class ErlangSyntaxError(ValueError):
    """Text that is not an Erlang term; ``line``/``column`` are 1-based."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message = message
        self.line = line
        self.column = column


def text(term: Any) -> str:
    """The text a binary or a string term holds.

    A binary is UTF-8 (ejabberd's text since 13.x). A charlist whose codes are all below
    256 and form valid UTF-8 is taken as UTF-8 bytes (older ejabberd kept UTF-8 bytes in
    strings); otherwise its items are code points.
    """
    if isinstance(term, bytes):
        return term.decode("utf-8")
    if isinstance(term, list) and all(isinstance(c, int) and c >= 0 for c in term):
        if all(c < 256 for c in term):
            try:
                return bytes(term).decode("utf-8")
            except UnicodeDecodeError:
                pass
        return "".join(map(chr, term))
    if isinstance(term, Atom):
        return str(term)
    raise TypeError(f"not a text term: {type(term).__name__}")


_WS = re.compile(r"(?:\s+|%[^\n]*)*")
_ATOM = re.compile(r"[a-zß-öø-ÿ][A-Za-z0-9_@À-ÖØ-öø-ÿ]*")
_NUMBER = re.compile(
    r"[+-]?(?:(?P<base>\d+)#(?P<digits>[0-9A-Za-z]+(?:_[0-9A-Za-z]+)*)"
    r"|(?P<float>\d+(?:_\d+)*\.\d+(?:_\d+)*(?:[eE][+-]?\d+)?)"
    r"|(?P<int>\d+(?:_\d+)*))"
)
_STRING = re.compile(r'"((?:[^"\\]|\\\^.|\\.)*)"', re.S)
_QATOM = re.compile(r"'((?:[^'\\]|\\\^.|\\.)*)'", re.S)
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x\{([0-9A-Fa-f]+)\}|x([0-9A-Fa-f]{2})|\^(.)|(.))", re.S)
_CHAR = re.compile(r"\$(?:(\\(?:[0-7]{1,3}|x\{[0-9A-Fa-f]+\}|x[0-9A-Fa-f]{2}|\^.|.))|(.))", re.S)
_OPAQUE = re.compile(r"<\d+\.\d+\.\d+>|#(?:Ref|Port|Fun)<[^<>]*>")
_DIGITS = "0123456789"
_DIGITS_NONEMPTY = frozenset(_DIGITS)
_SIMPLE_ESCAPES = {"b": 8, "d": 127, "e": 27, "f": 12, "n": 10, "r": 13, "s": 32, "t": 9, "v": 11}


def _escape_code(m: re.Match[str], err: Any) -> int:
    octal, braced, hex2, ctrl, single = m.groups()
    if octal is not None:
        return int(octal, 8)
    if braced is not None or hex2 is not None:
        code = int(braced or hex2, 16)
        if code > 0x10FFFF:
            raise err("character code above 16#10FFFF", m.start())
        return code
    if ctrl is not None:
        return 127 if ctrl == "?" else ord(ctrl) & 31
    return _SIMPLE_ESCAPES.get(single, ord(single))


class _Parser:
    """Recursive descent over one text; positions become line/column only on error."""

    def __init__(self, src: str, line: int) -> None:
        self.src = src
        self.pos = 0
        self.line = line

    def error(self, message: str, pos: int | None = None) -> ErlangSyntaxError:
        pos = self.pos if pos is None else pos
        line = self.line + self.src.count("\n", 0, pos)
        column = pos - (self.src.rfind("\n", 0, pos) + 1) + 1
        return ErlangSyntaxError(message, line, column)

    def ws(self) -> None:
        self.pos = _WS.match(self.src, self.pos).end()  # type: ignore[union-attr]

    def expect(self, token: str, what: str) -> None:
        self.ws()
        if not self.src.startswith(token, self.pos):
            raise self.error(f"expected {token!r} {what}")
        self.pos += len(token)

    def at(self, token: str) -> bool:
        self.ws()
        if self.src.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def term(self) -> Any:
        self.ws()
        src, pos = self.src, self.pos
        if pos >= len(src):
            raise self.error("unexpected end of text, a term was expected")
        c = src[pos]
        if c == "{":
            self.pos += 1
            return tuple(self.sequence("}", "in a tuple"))
        if c == "[":
            return self.list()
        if src.startswith("<<", pos):
            return self.binary()
        if c == "#" and src.startswith("#{", pos):
            return self.map()
        if c in "<#":
            m = _OPAQUE.match(src, pos)
            if m is None:
                if c == "#":
                    raise self.error("record syntax is not a term (~p prints records as tuples)")
                raise self.error("expected a pid like <0.1.0>")
            self.pos = m.end()
            return Opaque(m.group())
        if c == '"':
            return Charlist(self.strings())
        if c == "'":
            m = _QATOM.match(src, pos)
            if m is None:
                raise self.error("quoted atom not closed")
            self.pos = m.end()
            return Atom("".join(map(chr, self.unescape(m.group(1), m.start(1)))))
        if c == "$":
            return self.char()
        if c in _DIGITS or (c in "+-" and src[pos + 1 : pos + 2] in _DIGITS_NONEMPTY):
            return self.number()
        m = _ATOM.match(src, pos)
        if m is not None:
            self.pos = m.end()
            return Atom(m.group())
        if c.isupper() or c == "_":
            raise self.error("a variable is not a term")
        raise self.error(f"unexpected {c!r}")

    def sequence(self, close: str, where: str) -> list[Any]:
        items: list[Any] = []
        if self.at(close):
            return items
        while True:
            items.append(self.term())
            if self.at(close):
                return items
            self.expect(",", f"or {close!r} {where}")

    def list(self) -> Any:
        self.pos += 1
        items: list[Any] = []
        if self.at("]"):
            return items
        while True:
            items.append(self.term())
            if self.at("]"):
                return items
            if self.at("|"):
                tail = self.term()
                self.expect("]", "after the tail of a list")
                if isinstance(tail, list):
                    return items + tail
                if isinstance(tail, ImproperList):
                    return ImproperList((*items, *tail.items), tail.tail)
                return ImproperList(tuple(items), tail)
            self.expect(",", "or ']' or '|' in a list")

    def map(self) -> Map:
        self.pos += 2
        pairs: list[tuple[Any, Any]] = []
        if self.at("}"):
            return Map(())
        while True:
            key = self.term()
            self.expect("=>", "after a map key")
            pairs.append((key, self.term()))
            if self.at("}"):
                return Map(tuple(pairs))
            self.expect(",", "or '}' in a map")

    def unescape(self, body: str, start: int) -> list[int]:
        if "\\" not in body:
            return [ord(ch) for ch in body]

        def err(message: str, offset: int) -> ErlangSyntaxError:
            return self.error(message, start + offset)

        out: list[int] = []
        i = 0
        for m in _ESCAPE.finditer(body):
            out.extend(ord(ch) for ch in body[i : m.start()])
            out.append(_escape_code(m, err))
            i = m.end()
        out.extend(ord(ch) for ch in body[i:])
        return out

    def strings(self) -> list[int]:
        """One string literal or several adjacent ones (``~p`` splits long strings so)."""
        codes: list[int] = []
        while True:
            m = _STRING.match(self.src, self.pos)
            if m is None:
                raise self.error("string not closed")
            codes.extend(self.unescape(m.group(1), m.start(1)))
            self.pos = m.end()
            self.ws()
            if not self.src.startswith('"', self.pos):
                return codes

    def char(self) -> int:
        m = _CHAR.match(self.src, self.pos)
        if m is None:
            raise self.error("'$' without a character")
        self.pos = m.end()
        if m.group(2) is not None:
            return ord(m.group(2))
        esc = _ESCAPE.match(m.group(1))
        assert esc is not None
        return _escape_code(esc, lambda message, offset: self.error(message, m.start()))

    def number(self) -> int | float:
        m = _NUMBER.match(self.src, self.pos)
        if m is None:  # pragma: no cover - term() checked for a digit
            raise self.error("expected a number")
        end = m.end()
        if end < len(self.src) and (self.src[end].isalnum() or self.src[end] in "_#"):
            raise self.error("malformed number", self.pos)
        sign = -1 if self.src[self.pos] == "-" else 1
        self.pos = end
        if m.group("base") is not None:
            base = int(m.group("base"))
            if not 2 <= base <= 36:
                raise self.error(f"base {base} is outside 2..36", m.start())
            try:
                return sign * int(m.group("digits").replace("_", ""), base)
            except ValueError:
                raise self.error(f"digit out of range for base {base}", m.start()) from None
        if m.group("float") is not None:
            value = float(m.group("float").replace("_", ""))
            if math.isinf(value):
                raise self.error("float out of range", m.start())
            return sign * value
        return sign * int(m.group("int").replace("_", ""))

    def binary(self) -> bytes:
        self.pos += 2
        out = bytearray()
        if self.at(">>"):
            return bytes(out)
        while True:
            self.ws()
            start = self.pos
            if self.src.startswith('"', self.pos):
                codes = self.strings()
                if self.at("/"):
                    self.ws()
                    if not self.src.startswith("utf8", self.pos):
                        raise self.error("only /utf8 is supported after a string in a binary")
                    self.pos += 4
                    out += "".join(map(chr, codes)).encode("utf-8", "surrogatepass")
                else:
                    if any(c > 255 for c in codes):
                        raise self.error("a character above 255 in a binary without /utf8", start)
                    out += bytes(codes)
            else:
                value = self.term()
                if not isinstance(value, int) or not 0 <= value <= 255:
                    raise self.error("a binary segment must be a byte (0..255) or a string", start)
                if self.at(":") or self.at("/"):
                    raise self.error("bit strings and typed segments are not supported", start)
                out.append(value)
            if self.at(">>"):
                return bytes(out)
            self.expect(",", "or '>>' in a binary")

    def end(self, dot: bool) -> None:
        self.ws()
        if self.src.startswith(".", self.pos):
            self.pos += 1
            self.ws()
        elif dot:
            raise self.error("expected '.' after the term")
        if self.pos != len(self.src):
            raise self.error("unexpected text after the term")


def parse_term(source: str | bytes, *, line: int = 1, dot: bool = False) -> Any:
    """The one term in ``source``, optionally followed by ``.`` (required if ``dot``).

    ``bytes`` are decoded as Latin-1 (see the module's note on encoding); ``line`` is the
    line number of the text's start, for error messages.
    """
    src = source.decode("latin-1") if isinstance(source, bytes) else source
    parser = _Parser(src, line)
    term = parser.term()
    parser.end(dot)
    return term


_SCAN = re.compile(r"[\"'$%.]")
_SCAN_STRING = {'"': _STRING, "'": _QATOM}
_CHUNK = 1 << 16


def _scan_end(buf: str, pos: int, eof: bool) -> tuple[int | None, int]:
    """Find the ``.`` that ends the term scanned from ``pos``: (its index, or None and the
    position to rescan from once more text has been read)."""
    while True:
        m = _SCAN.search(buf, pos)
        if m is None:
            return None, len(buf)
        i = m.start()
        c = buf[i]
        if c in _SCAN_STRING:
            s = _SCAN_STRING[c].match(buf, i)
            if s is None:
                return None, i  # not closed yet: rescan from the quote
            pos = s.end()
        elif c == "$":
            if i + 3 > len(buf) and not eof:
                return None, i
            ch = _CHAR.match(buf, i)
            pos = ch.end() if ch is not None else i + 1
        elif c == "%":
            nl = buf.find("\n", i)
            if nl < 0:
                return None, i
            pos = nl
        else:  # '.'
            if i + 1 == len(buf):
                if eof:
                    return i, i
                return None, i
            nxt = buf[i + 1]
            if nxt.isspace() or nxt == "%":
                return i, i
            pos = i + 1


def iter_term_texts(stream: IO[str], chunk: int = _CHUNK) -> Iterator[tuple[int, str]]:
    """The top-level ``Term.`` items of a text stream, unparsed: (line of the term's first
    character, its text with the ``.``). Memory holds one chunk and the current term, so a
    dump of gigabytes streams flat; a caller can look at a term's head (``{passwd, ...``)
    and skip it without parsing it. Trailing text without a ``.`` is yielded as it is, so
    :func:`parse_term` reports it."""
    buf = ""
    start = scan = 0
    line = 1
    eof = False
    while True:
        end, scan = _scan_end(buf, scan, eof)
        if end is None:
            if eof:
                lead = _WS.match(buf, start).end()  # type: ignore[union-attr]
                if lead < len(buf):
                    yield line + buf.count("\n", start, lead), buf[lead:]
                return
            buf = buf[start:]
            scan -= start
            start = 0
            more = stream.read(chunk)
            eof = not more
            buf += more
            continue
        lead = _WS.match(buf, start).end()  # type: ignore[union-attr]
        yield line + buf.count("\n", start, lead), buf[lead : end + 1]
        line += buf.count("\n", start, end + 1)
        start = scan = end + 1


def iter_terms(stream: IO[str], chunk: int = _CHUNK) -> Iterator[tuple[int, Any]]:
    """(line, term) for each ``Term.`` of ``stream``; raises :class:`ErlangSyntaxError`
    at the first malformed one (use :func:`iter_term_texts` to go on past errors)."""
    for line, piece in iter_term_texts(stream, chunk):
        yield line, parse_term(piece, line=line, dot=True)


# -- writing (tests' round trips, fixtures) -------------------------------------------------

_BARE_ATOM = re.compile(r"[a-z][A-Za-z0-9_@]*\Z")
_RESERVED = frozenset(
    "after and andalso band begin bnot bor bsl bsr bxor case catch cond div end fun if let "
    "maybe else not of or orelse receive rem try when xor".split()
)


def _quote(codes: Iterable[int], quote: str) -> str:
    out = []
    for c in codes:
        ch = chr(c)
        if ch == quote or ch == "\\":
            out.append("\\" + ch)
        elif 32 <= c < 127:
            out.append(ch)
        else:
            out.append(f"\\x{{{c:X}}}")
    return quote + "".join(out) + quote


def format_term(term: Any) -> str:
    """One-line Erlang text for ``term`` that :func:`parse_term` reads back equal."""
    if isinstance(term, Atom):
        if _BARE_ATOM.match(term) and term not in _RESERVED:
            return str(term)
        return _quote(map(ord, term), "'")
    if isinstance(term, bool) or term is None:
        raise TypeError("use Atom('true'), Atom('false'), Atom('undefined')")
    if isinstance(term, int):
        return str(term)
    if isinstance(term, float):
        if not math.isfinite(term):
            raise ValueError("Erlang has no inf or nan")
        mantissa, _, exponent = repr(term).partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        return mantissa + ("e" + exponent if exponent else "")
    if isinstance(term, bytes):
        return "<<" + ",".join(map(str, term)) + ">>"
    if isinstance(term, Charlist) and all(isinstance(c, int) and 0 <= c <= 0x10FFFF for c in term):
        return _quote(term, '"')
    if isinstance(term, list):
        return "[" + ",".join(map(format_term, term)) + "]"
    if isinstance(term, tuple):
        return "{" + ",".join(map(format_term, term)) + "}"
    if isinstance(term, ImproperList):
        return "[" + ",".join(map(format_term, term.items)) + "|" + format_term(term.tail) + "]"
    if isinstance(term, Map):
        return "#{" + ",".join(f"{format_term(k)} => {format_term(v)}" for k, v in term.pairs) + "}"
    if isinstance(term, Opaque):
        return term.text
    raise TypeError(f"no Erlang form for {type(term).__name__}")
