"""PEP node configuration: publish-options as preconditions (XEP-0060 §7.1.5), configure
forms (§8.2), max_items clamping, and who may read a node (§4.5 access models)."""

from __future__ import annotations

import pytest
from lxml import etree

from xmppd.pubsub import nodeconfig
from xmppd.pubsub.access import denied, may_read
from xmppd.pubsub.config import PepConfig
from xmppd.pubsub.names import ERRORS, NODE_CONFIG, PUBLISH_OPTIONS
from xmppd.pubsub.nodeconfig import NodeConfig
from xmppd.settings import ConfigError
from xmppd.xml.errors import StanzaError

CEILING = 50


def form(form_type: str = PUBLISH_OPTIONS, **fields: str) -> etree._Element:
    parts = [
        f"<field var='FORM_TYPE' type='hidden'><value>{form_type}</value></field>",
        *(f"<field var='pubsub#{k}'><value>{v}</value></field>" for k, v in fields.items()),
    ]
    return etree.fromstring(f"<x xmlns='jabber:x:data' type='submit'>{''.join(parts)}</x>")


def app_condition(err: StanzaError) -> str | None:
    if err.app is None:
        return None
    assert etree.QName(err.app).namespace == ERRORS
    return etree.QName(err.app).localname


def test_publish_options_become_the_new_nodes_configuration() -> None:
    options = nodeconfig.parse_publish_options(
        form(access_model="whitelist", max_items="max", persist_items="true",
             send_last_published_item="never", notify_retract="0"),
        CEILING,
    )  # fmt: skip
    config = nodeconfig.apply(NodeConfig(), options)
    assert config == NodeConfig("whitelist", CEILING, True, "never", False)


def test_defaults_are_xep_0163s() -> None:
    assert NodeConfig() == NodeConfig("presence", 1, True, "on_sub_and_presence", True)
    assert NodeConfig.from_json(NodeConfig("open", 7).to_json()) == NodeConfig("open", 7)


def test_preconditions_match_or_conflict() -> None:
    config = NodeConfig(access_model="whitelist", max_items=CEILING)
    same = nodeconfig.parse_publish_options(form(access_model="whitelist", max_items="max"), 50)
    nodeconfig.check_preconditions(config, same)  # no error
    for fields in ({"access_model": "open"}, {"max_items": "3"}, {"persist_items": "false"}):
        options = nodeconfig.parse_publish_options(form(**fields), CEILING)
        with pytest.raises(StanzaError) as exc:
            nodeconfig.check_preconditions(config, options)
        assert exc.value.condition == "conflict"
        assert app_condition(exc.value) == "precondition-not-met"


def test_an_unknown_publish_option_is_a_precondition_not_met() -> None:
    with pytest.raises(StanzaError) as exc:
        nodeconfig.parse_publish_options(form(deliver_payloads="1"), CEILING)
    assert exc.value.condition == "conflict"
    assert app_condition(exc.value) == "precondition-not-met"


def test_an_unknown_configure_field_is_left_out() -> None:
    changes = nodeconfig.parse_form(
        form(NODE_CONFIG, title="x", max_items="4"), NODE_CONFIG, CEILING, strict=False
    )
    assert changes == {"max_items": 4}


@pytest.mark.parametrize(
    ("value", "expected"), [("1000000000", CEILING), ("max", CEILING), ("7", 7), ("50", 50)]
)
def test_max_items_is_clamped(value: str, expected: int) -> None:
    assert nodeconfig.parse_max_items(value, CEILING) == expected


@pytest.mark.parametrize("value", ["0", "-1", "x", "1e9", "9" * 40, ""])
def test_bad_max_items_is_not_acceptable(value: str) -> None:
    with pytest.raises(StanzaError) as exc:
        nodeconfig.parse_max_items(value, CEILING)
    assert exc.value.condition == "not-acceptable"


def test_bad_values_and_form_types() -> None:
    with pytest.raises(StanzaError) as exc:
        nodeconfig.parse_publish_options(form(access_model="authorize"), CEILING)
    assert app_condition(exc.value) == "unsupported-access-model"
    with pytest.raises(StanzaError) as exc:
        nodeconfig.parse_publish_options(form(persist_items="maybe"), CEILING)
    assert exc.value.condition == "not-acceptable"
    with pytest.raises(StanzaError) as exc:
        nodeconfig.parse_publish_options(form(NODE_CONFIG, max_items="2"), CEILING)
    assert exc.value.condition == "bad-request"


def test_config_form_round_trips() -> None:
    config = NodeConfig("open", 9, False, "on_sub", False)
    rendered = nodeconfig.config_form(config, CEILING)
    rendered.set("type", "submit")
    changes = nodeconfig.parse_form(rendered, NODE_CONFIG, CEILING, strict=True)
    assert nodeconfig.apply(NodeConfig(), changes) == config


@pytest.mark.parametrize(
    ("model", "owner", "subscription", "allowed"),
    [
        ("open", False, None, True),
        ("presence", False, None, False),
        ("presence", False, "to", False),
        ("presence", False, "from", True),
        ("presence", False, "both", True),
        ("whitelist", False, "both", False),
        ("whitelist", True, None, True),
        ("presence", True, None, True),
    ],
)
def test_access_models(model: str, owner: bool, subscription: str | None, allowed: bool) -> None:
    assert may_read(model, owner=owner, subscription=subscription) is allowed


def test_denials_name_the_reason() -> None:
    assert denied("presence").condition == "not-authorized"
    assert app_condition(denied("presence")) == "presence-subscription-required"
    assert denied("whitelist").condition == "not-allowed"
    assert app_condition(denied("whitelist")) == "closed-node"


def test_pep_config_validation() -> None:
    PepConfig().validate()
    with pytest.raises(ConfigError):
        PepConfig(max_node_length=3000).validate()
    with pytest.raises(ConfigError):
        PepConfig(max_items=0).validate()
