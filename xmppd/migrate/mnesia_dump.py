"""``ejabberdctl dump FILE`` as a :class:`~xmppd.migrate.model.Source`.

``ejabberd_admin:dump_to_textfile`` (ejabberd 23.01) writes ``{tables, [{Table, [{record_name,
...}, {attributes, [...]}]}]}.`` and then every record of every local table with
``io:format(F, "~p.~n", [Record])``, the record's tag replaced by its table's name, on a file
opened without an encoding (so Latin-1 here: see :mod:`xmppd.migrate.erlang_terms`).

``~p`` starts each top-level term at column 0 and indents every line it wraps, so a record
is a line that starts with something else than white space plus the indented lines after
it. That is how the file is streamed: a record of a table the asked-for kind does not need
is skipped by its first characters without being parsed, memory holds one record, and each
``read(kind)`` rescans the file (reading a few GB is cheaper than holding them). A record
that is not well formed becomes a :class:`Problem` with its line; tables that are not
imported are listed once, with their sizes, at the end of reading the accounts.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from xmppd.migrate.erlang_terms import ErlangSyntaxError, parse_term
from xmppd.migrate.mnesia_records import CONVERTERS
from xmppd.migrate.model import Kind, Problem, Record

__all__ = ["MnesiaDumpSource", "looks_like_dump"]

_HEAD = re.compile(r"\{\s*([a-z][A-Za-z0-9_@]*|'(?:[^'\\]|\\.)*')\s*,")
_INDENT = frozenset(" \t\r\n")
_GROUPCHAT_END = "groupchat}."  # #archive_msg{}'s last field is its type
_ROOM_ARCHIVE = "archive_msg groupchat"  # a count of its own in ``seen``

#: Tables that are read but feed another kind, or that hold nothing to move (derived
#: data, or what xmppd keeps elsewhere or not at all): why each is left.
NOT_IMPORTED = {
    "vcard_search": "the search index of vcard, rebuilt from the vCards",
    "roster_version": "roster versions, recomputed",
    "reg_users_counter": "a count of accounts",
    "archive_prefs": "per-account archiving preferences (xmppd has its own defaults)",
    "last_activity": "last logout times (XEP-0012)",
    "privacy": "privacy lists (XEP-0016)",
    "muc_online_room": "rooms running at dump time",
}

_KIND_TABLE = {kind: table for table, (kinds, _) in CONVERTERS.items() for kind in kinds}


def looks_like_dump(path: Path) -> bool:
    """Whether ``path`` starts like a dump (``{tables,``): for ``import`` auto-detection."""
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return re.match(rb"\s*\{\s*tables\s*,", head) is not None


class MnesiaDumpSource:
    """The records of an ejabberd Mnesia text dump, kind by kind (see the module)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"ejabberd Mnesia dump {path.name}"
        self._counts: Counter[str] | None = None

    def _groups(self, wanted: str | None, seen: Counter[str]) -> Iterator[tuple[int, str, str]]:
        """(first line, table, text) of each record of table ``wanted`` (every record
        when None); ``seen`` counts records per table (``"?"``: not a ``{tag, ...``)."""
        with self.path.open(encoding="latin-1", newline="") as f:
            parts: list[str] = []
            table = last = ""
            first = 0
            for number, line in enumerate(f, 1):
                if line[:1] in _INDENT:
                    if parts:
                        parts.append(line)
                    last = line
                    continue
                if table == "archive_msg" and last.rstrip().endswith(_GROUPCHAT_END):
                    seen[_ROOM_ARCHIVE] += 1
                last = line
                if parts:
                    yield first, table, "".join(parts)
                    parts = []
                m = _HEAD.match(line)
                table = m.group(1).strip("'") if m else "?"
                seen[table] += 1
                if wanted is None or table == wanted or table == "?":
                    parts = [line]
                    first = number
            if table == "archive_msg" and last.rstrip().endswith(_GROUPCHAT_END):
                seen[_ROOM_ARCHIVE] += 1
            if parts:
                yield first, table, "".join(parts)

    def read(self, kind: Kind) -> Iterator[Record | Problem]:
        table = _KIND_TABLE[kind]
        convert = CONVERTERS[table][1]
        seen: Counter[str] = Counter()
        for line, tag, text in self._groups(table, seen):
            where = f"line {line}"
            if tag == "?":
                if kind is Kind.ACCOUNTS:
                    yield Problem(None, where, f"not a record: {text[:40]!r}")
                continue
            if table == "archive_msg" and (
                text.rstrip().endswith(_GROUPCHAT_END) != (kind is Kind.ROOM_ARCHIVE)
            ):
                continue  # the other archive: skipped unparsed (a malformed one too)
            try:
                term = parse_term(text, line=line, dot=True)
                for item in convert(term, kind):
                    if isinstance(item, Problem):
                        item = dataclasses.replace(item, where=where)
                    yield item
            except ErlangSyntaxError as exc:
                yield Problem(kind, where, f"{table}: {exc}")
            except (ValueError, TypeError, UnicodeDecodeError) as exc:
                yield Problem(kind, where, f"{table}: {exc}")
        if self._counts is None:
            self._counts = seen
        if kind is Kind.ACCOUNTS:
            yield from self._not_imported(seen)

    def _not_imported(self, seen: Counter[str]) -> Iterator[Problem]:
        for table, count in sorted(seen.items()):
            if table in CONVERTERS or table in ("tables", "?", _ROOM_ARCHIVE):
                continue
            why = NOT_IMPORTED.get(table, "a table this import does not know")
            yield Problem(None, f"table {table}", f"{count} records not imported: {why}")

    def estimate(self, kind: Kind) -> int | None:
        """Records of the kind's table (an archive's by the type its records end with)."""
        if self._counts is None:
            seen: Counter[str] = Counter()
            for _ in self._groups("", seen):
                pass
            self._counts = seen
        counts = self._counts
        if kind is Kind.ROOM_ARCHIVE:
            return counts[_ROOM_ARCHIVE]
        if kind is Kind.ACCOUNT_ARCHIVE:
            return counts["archive_msg"] - counts[_ROOM_ARCHIVE]
        return counts[_KIND_TABLE[kind]]
