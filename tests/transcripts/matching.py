"""Structural comparison of an expected stanza (from a transcript) with a received one.

Rules (README.md here):

- element names and namespaces must be equal;
- every attribute written must be present with that value; ``{any}`` accepts any value;
  an attribute the server sent that the file does not write fails;
- text is compared with surrounding whitespace stripped; ``{any}`` accepts any text;
- children match in any order (XMPP gives the order of different children no meaning),
  each expected child against a different received child; a received child the file
  does not write fails;
- ``t:partial='true'`` on an expected element lets its received counterpart carry extra
  attributes, children and text (for large forms or lists where only some parts matter).
"""

from __future__ import annotations

from lxml import etree

from tests.transcripts.script import DIRECTIVES

ANY = "{any}"
PARTIAL = "{%s}partial" % DIRECTIVES


def _text(element: etree._Element) -> str:
    return (element.text or "").strip()


def _name(tag: str) -> str:
    """``{ns}local`` as ``local`` in error messages (the namespace follows in brackets)."""
    ns, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    return f"{local}[{ns}]" if ns else local


def mismatch(expected: etree._Element, got: etree._Element, where: str = "") -> str | None:
    """None if ``got`` matches ``expected``; else where and how they first differ."""
    here = f"{where}/{_name(expected.tag)}"
    if expected.tag != got.tag:
        return f"{where or '/'}: element {_name(got.tag)}, expected {_name(expected.tag)}"
    partial = expected.get(PARTIAL) == "true"
    problem = _attributes(expected, got, here, partial)
    if problem:
        return problem
    want, have = _text(expected), _text(got)
    if want == ANY:
        if not have:
            return f"{here}: no text, expected some"
    elif want != have and (want or not partial):
        return f"{here}: text {have!r}, expected {want!r}"
    return _children(expected, got, here, partial)


def _attributes(expected: etree._Element, got: etree._Element, here: str, partial: bool) -> str:
    for name, value in expected.attrib.items():
        if name.startswith("{%s}" % DIRECTIVES):
            continue
        actual = got.get(name)
        if actual is None:
            return f"{here}: attribute {_name(name)} missing, expected {value!r}"
        if value != ANY and actual != value:
            return f"{here}: attribute {_name(name)} is {actual!r}, expected {value!r}"
    if not partial:
        for name, value in got.attrib.items():
            if name not in expected.attrib:
                return f"{here}: unexpected attribute {_name(name)}={value!r}"
    return ""


def _children(
    expected: etree._Element, got: etree._Element, here: str, partial: bool
) -> str | None:
    wanted = [c for c in expected if isinstance(c.tag, str)]
    present = [c for c in got if isinstance(c.tag, str)]
    assignment = _assign(wanted, present, here)
    if isinstance(assignment, str):
        return assignment
    if not partial:
        extra = [c for i, c in enumerate(present) if i not in assignment]
        if extra:
            return f"{here}: unexpected child {_serialize(extra[0])}"
    return None


def _assign(
    wanted: list[etree._Element], present: list[etree._Element], here: str
) -> set[int] | str:
    """Indices of ``present`` matched one-to-one to ``wanted`` (backtracking, lists are
    tiny), or the reason the first unmatchable expected child fails."""
    used: set[int] = set()

    def place(i: int) -> str | None:
        if i == len(wanted):
            return None
        reasons = []
        for j, candidate in enumerate(present):
            if j in used:
                continue
            reason = mismatch(wanted[i], candidate, here)
            if reason is None:
                used.add(j)
                later = place(i + 1)
                if later is None:
                    return None
                used.discard(j)
                reasons.append(later)
            elif candidate.tag == wanted[i].tag:
                reasons.append(reason)
        if reasons:
            return reasons[0]
        return f"{here}: missing child {_serialize(wanted[i])}"

    failure = place(0)
    return used if failure is None else failure


def _serialize(element: etree._Element) -> str:
    text = etree.tostring(element, encoding="unicode", with_tail=False)
    return text if len(text) < 200 else text[:197] + "..."


def pretty(element: etree._Element) -> str:
    """Indented XML without the namespace declarations the stream already implies."""
    copy = etree.fromstring(etree.tostring(element))
    etree.indent(copy, space="  ")
    text = etree.tostring(copy, encoding="unicode", with_tail=False)
    text = text.replace(' xmlns="jabber:client"', "", 1)
    return text.replace(' xmlns:t="%s"' % DIRECTIVES, "")
