"""A PEP node's configuration (XEP-0060 §16.4.4 ``pubsub#node_config``) and publish-options.

Only the fields this server acts on exist; each is one :class:`NodeConfig` attribute.
``publish-options`` (§7.1.5) are preconditions: an existing node must already have each
given value (else ``conflict`` + ``<precondition-not-met/>``), a new node is created with
them. ``pubsub#max_items`` takes a number or ``max`` and is clamped to the server's
``pep.max_items`` (an absurd 1000000000 becomes the ceiling, not an error, §12.16).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from lxml import etree

from xmppd.pubsub.names import DATA, ERRORS, NODE_CONFIG, PUBLISH_OPTIONS
from xmppd.xml.errors import StanzaError

ACCESS_MODELS = ("open", "presence", "whitelist")
SEND_LAST = ("never", "on_sub", "on_sub_and_presence")
_TRUE = ("1", "true")
_FALSE = ("0", "false")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """What a node does; the defaults are XEP-0163 §4's for PEP nodes (with max_items 1)."""

    access_model: str = "presence"
    max_items: int = 1
    persist_items: bool = True
    send_last_published_item: str = "on_sub_and_presence"
    notify_retract: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NodeConfig:
        data: dict[str, Any] = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def pubsub_error(condition: str, app: str | None, text: str | None = None) -> StanzaError:
    """A stanza error with XEP-0060's application condition (``pubsub#errors``)."""
    el = None
    if app is not None:
        el = etree.Element("{%s}%s" % (ERRORS, app), nsmap={None: ERRORS})
    return StanzaError(condition, text, app=el)


def form_values(form: etree._Element) -> dict[str, list[str]]:
    """A data form's fields (XEP-0004): var -> values (FORM_TYPE included)."""
    out: dict[str, list[str]] = {}
    for field in form.iterfind("{%s}field" % DATA):
        var = field.get("var")
        if var:
            out[var] = [v.text or "" for v in field.iterfind("{%s}value" % DATA)]
    return out


def _one(var: str, values: list[str]) -> str:
    if len(values) != 1:
        raise StanzaError("not-acceptable", f"{var} takes one value")
    return values[0].strip()


def parse_field(var: str, values: list[str], max_items: int) -> tuple[str, Any]:
    """One field as (attribute, value), or ``not-acceptable``; None for an unknown var."""
    value = _one(var, values)
    if var == "pubsub#access_model":
        if value not in ACCESS_MODELS:
            raise pubsub_error("not-acceptable", "unsupported-access-model", value[:50])
        return "access_model", value
    if var == "pubsub#send_last_published_item":
        if value not in SEND_LAST:
            raise StanzaError("not-acceptable", f"send_last_published_item: {value[:50]!r}")
        return "send_last_published_item", value
    if var in ("pubsub#persist_items", "pubsub#notify_retract"):
        if value.lower() not in _TRUE + _FALSE:
            raise StanzaError("not-acceptable", f"{var} is a boolean")
        return var.split("#", 1)[1], value.lower() in _TRUE
    if var == "pubsub#max_items":
        return "max_items", parse_max_items(value, max_items)
    raise KeyError(var)


def parse_max_items(value: str, ceiling: int) -> int:
    """``max`` or a positive number, clamped to ``ceiling`` (the server's limit)."""
    if value == "max":
        return ceiling
    if not value.isdigit() or len(value) > 30 or int(value) < 1:
        raise StanzaError("not-acceptable", "pubsub#max_items is a positive number or max")
    return min(int(value), ceiling)


def parse_form(
    form: etree._Element, form_type: str, max_items: int, *, strict: bool
) -> dict[str, Any]:
    """The known fields of a submitted form as NodeConfig changes.

    ``strict``: an unknown field is an error (publish-options: a precondition this
    server cannot promise is not met); otherwise it is left out (§8.2.5: a configure
    form may carry fields of other XEPs the service does not support).
    """
    if form.tag != "{%s}x" % DATA or form.get("type") not in ("submit", None):
        raise StanzaError("bad-request", "a submitted data form is expected")
    values = form_values(form)
    declared = values.pop("FORM_TYPE", [form_type])
    if declared != [form_type]:
        raise StanzaError("bad-request", f"FORM_TYPE must be {form_type}")
    changes: dict[str, Any] = {}
    for var, vals in values.items():
        try:
            key, value = parse_field(var, vals, max_items)
        except KeyError:
            if strict:
                raise pubsub_error(
                    "conflict", "precondition-not-met", f"unsupported option {var[:80]}"
                ) from None
            continue
        changes[key] = value
    return changes


def parse_publish_options(form: etree._Element, max_items: int) -> dict[str, Any]:
    return parse_form(form, PUBLISH_OPTIONS, max_items, strict=True)


def check_preconditions(config: NodeConfig, options: dict[str, Any]) -> None:
    """§7.1.5: each publish-option must equal the existing node's configuration."""
    for key, wanted in options.items():
        if getattr(config, key) != wanted:
            raise pubsub_error(
                "conflict", "precondition-not-met", f"the node's {key} is not {wanted!r}"
            )


def apply(config: NodeConfig, changes: dict[str, Any]) -> NodeConfig:
    return replace(config, **changes)


def config_form(config: NodeConfig, max_items: int) -> etree._Element:
    """The node's configuration as a ``form`` (§8.2.1), the fields this server supports."""
    x = etree.Element("{%s}x" % DATA, type="form", nsmap={None: DATA})
    _field(x, "FORM_TYPE", "hidden", [NODE_CONFIG])
    _field(x, "pubsub#access_model", "list-single", [config.access_model], ACCESS_MODELS)
    _field(x, "pubsub#max_items", "text-single", [str(config.max_items)], label=f"≤ {max_items}")
    _field(x, "pubsub#persist_items", "boolean", [_bool(config.persist_items)])
    _field(
        x,
        "pubsub#send_last_published_item",
        "list-single",
        [config.send_last_published_item],
        SEND_LAST,
    )
    _field(x, "pubsub#notify_retract", "boolean", [_bool(config.notify_retract)])
    return x


def _bool(value: bool) -> str:
    return "1" if value else "0"


def _field(
    x: etree._Element,
    var: str,
    type_: str,
    values: list[str],
    options: tuple[str, ...] = (),
    label: str | None = None,
) -> None:
    field = etree.SubElement(x, "{%s}field" % DATA, var=var, type=type_)
    if label is not None:
        field.set("label", label)
    for value in values:
        etree.SubElement(field, "{%s}value" % DATA).text = value
    for option in options:
        opt = etree.SubElement(field, "{%s}option" % DATA)
        etree.SubElement(opt, "{%s}value" % DATA).text = option
