"""Erlang term text from Python values, the inverse of ``erlang_terms.parse_term``.

For round-trip tests and hand-made fixtures; ``~p``'s line breaks are not reproduced.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from xmppd.migrate.erlang_terms import Atom, Charlist, ImproperList, Map, Opaque

__all__ = ["format_term"]

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
