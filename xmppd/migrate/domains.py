"""``--map-domain old=new``: renaming a site's domains in every record it moves.

A mapping applies to the domain itself and to its subdomains (``conference.old`` becomes
``conference.new``), in every JID of every record and in the ``to``/``from``/``by``/``jid``
attributes of stored stanzas (the archive's ``<stanza-id by=…>``, a MUC ``<item jid=…>``,
a ``<delay from=…>``). Domains are compared in lower case (they are IDNA names, RFC 7622
§3.2); localparts and resources are left exactly as they were.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["DomainMap", "parse_mapping"]

#: one JID-valued attribute inside a tag
_MEMO = 50_000
_ATTR = re.compile(r"""(\s(?:to|from|by|jid)\s*=\s*)(?:"([^"]*)"|'([^']*)')""")


def parse_mapping(text: str) -> tuple[str, str]:
    """``old=new`` as typed on the command line; ValueError for anything else."""
    old, sep, new = text.partition("=")
    old, new = old.strip().lower().rstrip("."), new.strip().lower().rstrip(".")
    if not sep or not old or not new or "@" in old + new or "/" in old + new:
        raise ValueError(f"--map-domain wants OLD=NEW (two domains), not {text!r}")
    return old, new


class DomainMap:
    """Old domain -> new domain, subdomains included; empty: everything unchanged."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = dict(pairs)
        # The longest old domain first: a mapping of conference.old beats one of old.
        self._order = sorted(self._pairs, key=len, reverse=True)
        self._memo: dict[str, str] = {}  # an archive names few JIDs, many times
        names = "|".join(re.escape(old) for old in self._order) or "(?!)"
        #: a start or empty-element tag naming an old domain somewhere inside it
        self._tags = re.compile(r"<[^<>!?/][^<>]*?(?:%s)[^<>]*>" % names, re.IGNORECASE)

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def domain(self, domain: str) -> str:
        lowered = domain.lower()
        for old in self._order:
            if lowered == old:
                return self._pairs[old]
            if lowered.endswith("." + old):
                return lowered[: -len(old)] + self._pairs[old]
        return domain

    def jid(self, jid: str) -> str:
        """``local@domain/resource`` with its domain mapped (a bare domain too)."""
        if not self._pairs or not jid:
            return jid
        mapped = self._memo.get(jid)
        if mapped is None:
            head, slash, resource = jid.partition("/")
            local, at, domain = head.rpartition("@")
            mapped = f"{local}{at}{self.domain(domain)}{slash}{resource}"
            if len(self._memo) >= _MEMO:
                self._memo.clear()
            self._memo[jid] = mapped
        return mapped

    def stanza(self, xml: str) -> str:
        """``xml`` with the JID attributes of every element mapped.

        Done on the serialized text, not a tree (an archive has millions of rows): in
        well-formed XML a ``<`` outside markup is always escaped, so each ``<…>`` span is
        a tag, and only the ``to``/``from``/``by``/``jid`` attributes inside tags change;
        text (a body naming the old domain) stays as written. Unchanged when no old
        domain occurs in it."""
        if not self._pairs:
            return xml
        return self._tags.sub(self._tag, xml)

    def _tag(self, tag: re.Match[str]) -> str:
        return _ATTR.sub(self._attr, tag.group(0))

    def _attr(self, attr: re.Match[str]) -> str:
        if attr.group(2) is not None:
            return f'{attr.group(1)}"{self.jid(attr.group(2))}"'
        return f"{attr.group(1)}'{self.jid(attr.group(3))}'"
