"""XEP-0004 data forms the room speaks: muc#roominfo, muc#roomconfig, muc#register, MAM."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lxml import etree

DATA = "jabber:x:data"
X = "{%s}x" % DATA
FIELD = "{%s}field" % DATA
VALUE = "{%s}value" % DATA
OPTION = "{%s}option" % DATA

ROOMINFO = "http://jabber.org/protocol/muc#roominfo"
ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
REGISTER = "http://jabber.org/protocol/muc#register"
MAM = "urn:xmpp:mam:2"


class Form:
    """A form being built; ``el`` is the ``<x/>`` element."""

    def __init__(self, type_: str, form_type: str, title: str | None = None) -> None:
        self.el = etree.Element(X, type=type_, nsmap={None: DATA})
        if title:
            etree.SubElement(self.el, "{%s}title" % DATA).text = title
        self.add("FORM_TYPE", "hidden", [form_type])

    def add(
        self,
        var: str,
        type_: str | None,
        values: Sequence[str] = (),
        label: str | None = None,
        options: Iterable[tuple[str, str]] = (),
    ) -> Form:
        f = etree.SubElement(self.el, FIELD, var=var)
        if type_ is not None:
            f.set("type", type_)
        if label:
            f.set("label", label)
        for value in values:
            etree.SubElement(f, VALUE).text = value
        for opt_value, opt_label in options:
            opt = etree.SubElement(f, OPTION, label=opt_label)
            etree.SubElement(opt, VALUE).text = opt_value
        return self


def bool_value(flag: bool) -> list[str]:
    return ["1" if flag else "0"]


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true"):
        return True
    if low in ("0", "false"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def find_form(parent: etree._Element) -> etree._Element | None:
    return parent.find(X)


def form_values(form: etree._Element) -> dict[str, list[str]]:
    """``var -> values`` of a submitted form (FORM_TYPE included)."""
    out: dict[str, list[str]] = {}
    for f in form.iterfind(FIELD):
        var = f.get("var")
        if var:
            out[var] = [v.text or "" for v in f.iterfind(VALUE)]
    return out


def form_type(form: etree._Element) -> str | None:
    values = form_values(form).get("FORM_TYPE")
    return values[0] if values else None


def first(values: dict[str, list[str]], var: str) -> str | None:
    got = values.get(var)
    return got[0] if got else None
