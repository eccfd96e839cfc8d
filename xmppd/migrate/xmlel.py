"""ejabberd's XML element terms (fast_xml's ``#xmlel{}``) → lxml elements and XML text.

Mnesia keeps stanzas, vCards and private XML as ``{xmlel, Name, Attrs, Children}`` with
``Attrs = [{Name, Value}]`` (``xmlns`` and ``xmlns:p`` among them, as on the wire) and
children that are elements or ``{xmlcdata, Text}``. Building an lxml tree (not pasting
strings) gets namespaces and escaping right; text lxml refuses (control characters, which
XML 1.0 forbids) raises :class:`ValueError` for the caller to report.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from xmppd.migrate.erlang_terms import text

__all__ = ["element", "to_xml"]

XML_NS = "http://www.w3.org/XML/1998/namespace"


def _str(term: Any) -> str:
    """A binary, a string, or an iolist of them (fast_xml accepts all three)."""
    if isinstance(term, bytes):
        return term.decode("utf-8")
    if isinstance(term, list) and not all(isinstance(c, int) for c in term):
        return "".join(_str(part) for part in term)
    return text(term)


def _qname(name: str, scope: dict[str | None, str], attribute: bool) -> str:
    prefix, colon, local = name.rpartition(":")
    if not colon:
        if attribute:
            return name
        default = scope.get(None)
        return f"{{{default}}}{name}" if default else name
    if prefix == "xml":
        return f"{{{XML_NS}}}{local}"
    if prefix not in scope:
        raise ValueError(f"undeclared namespace prefix in {name!r}")
    return f"{{{scope[prefix]}}}{local}"


def _build(term: Any, parent: etree._Element | None, scope: dict[str | None, str]) -> Any:
    if not (isinstance(term, tuple) and len(term) == 4 and term[0] == "xmlel"):
        raise ValueError("not an {xmlel, Name, Attrs, Children} element")
    _, name, attrs, children = term
    nsmap: dict[str | None, str] = {}
    plain: list[tuple[str, str]] = []
    for item in attrs:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ValueError("an attribute is not {Name, Value}")
        key, value = _str(item[0]), _str(item[1])
        if key == "xmlns":
            nsmap[None] = value
        elif key.startswith("xmlns:"):
            nsmap[key[6:]] = value
        else:
            plain.append((key, value))
    if nsmap:
        scope = {**scope, **nsmap}
    # the root declares what it inherits (the default namespace given by the caller)
    declared = {k: v for k, v in (scope if parent is None else nsmap).items() if v}
    tag = _qname(_str(name), scope, attribute=False)
    if parent is None:
        el = etree.Element(tag, nsmap=declared)
    else:
        el = etree.SubElement(parent, tag, nsmap=declared)
    for key, value in plain:
        el.set(_qname(key, scope, attribute=True), value)
    last: etree._Element | None = None
    for child in children:
        if isinstance(child, tuple) and len(child) == 2 and child[0] == "xmlcdata":
            data = _str(child[1])
            if last is None:
                el.text = (el.text or "") + data
            else:
                last.tail = (last.tail or "") + data
        else:
            last = _build(child, el, scope)
    return el


def element(term: Any, default_ns: str | None = None) -> Any:
    """The lxml element for an ``xmlel`` term; ``default_ns`` applies when the top element
    declares none (``jabber:client`` for stanzas)."""
    scope: dict[str | None, str] = {None: default_ns} if default_ns else {}
    return _build(term, None, scope)


def to_xml(term: Any, default_ns: str | None = None) -> str:
    """XML text for an ``xmlel`` term (see :func:`element`)."""
    return etree.tostring(element(term, default_ns), encoding="unicode")
