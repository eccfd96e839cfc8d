"""``--map-domain old=new``: renaming a site's domains in every record it moves.

A mapping applies to the domain itself and to its subdomains (``conference.old`` becomes
``conference.new``), in every JID of every record and in the ``to``/``from``/``by``/``jid``
attributes of stored stanzas (the archive's ``<stanza-id by=…>``, a MUC ``<item jid=…>``,
a ``<delay from=…>``). Domains are compared in lower case (they are IDNA names, RFC 7622
§3.2); localparts and resources are left exactly as they were.
"""

from __future__ import annotations

from collections.abc import Iterable

from lxml import etree

__all__ = ["DomainMap", "parse_mapping"]

_ATTRS = ("to", "from", "by", "jid")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


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
        head, slash, resource = jid.partition("/")
        local, at, domain = head.rpartition("@")
        return f"{local}{at}{self.domain(domain)}{slash}{resource}"

    def stanza(self, xml: str) -> str:
        """``xml`` with the JID attributes of every element mapped (unchanged when no old
        domain occurs in it: most rows of a big archive are not parsed at all)."""
        if not self._pairs or not any(old in xml.lower() for old in self._order):
            return xml
        root = etree.fromstring(xml.encode("utf-8"), _PARSER)
        for el in root.iter():
            for name in _ATTRS:
                value = el.get(name)
                if value:
                    el.set(name, self.jid(value))
        return etree.tostring(root, encoding="unicode")
