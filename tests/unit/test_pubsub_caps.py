"""XEP-0115 verification strings and hashes against the XEP's own examples (§5.2, §5.3),
the §5.4 rules for unusable answers, and the bounded cache."""

from __future__ import annotations

import base64
import hashlib

import pytest
from lxml import etree

from xmppd.pubsub.caps import (
    CapsCache,
    CapsError,
    caps_hash,
    notify_nodes,
    parse_info,
    verification_string,
    verify,
)

SIMPLE = """<query xmlns='http://jabber.org/protocol/disco#info'>
  <identity category='client' name='Exodus 0.9.1' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
</query>"""

COMPLEX = """<query xmlns='http://jabber.org/protocol/disco#info'>
  <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
  <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
    <field var='ip_version' type='text-multi'><value>ipv4</value><value>ipv6</value></field>
    <field var='os'><value>Mac</value></field>
    <field var='os_version'><value>10.5.1</value></field>
    <field var='software'><value>Psi</value></field>
    <field var='software_version'><value>0.11</value></field>
  </x>
</query>"""


def q(xml: str) -> etree._Element:
    return etree.fromstring(xml.encode("utf-8"))


def test_simple_example_of_section_5_2() -> None:
    info = parse_info(q(SIMPLE))
    assert verification_string(info) == (
        "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<"
        "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
        "http://jabber.org/protocol/muc<"
    )
    assert caps_hash("sha-1", info) == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_complex_example_of_section_5_3() -> None:
    info = parse_info(q(COMPLEX))
    assert verification_string(info) == (
        "client/pc/el/Ψ 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<"
        "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
        "http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<"
        "ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<"
    )
    assert caps_hash("sha-1", info) == "q07IKJEyjvHSyhy//CH0CxmKi8w="


def test_verify_accepts_the_right_ver_and_refuses_a_wrong_one() -> None:
    features = verify("sha-1", "QgayPKawpkPSDYmwT/WM94uAlu0=", q(SIMPLE))
    assert "http://jabber.org/protocol/muc" in features
    with pytest.raises(CapsError):
        verify("sha-1", "q07IKJEyjvHSyhy//CH0CxmKi8w=", q(SIMPLE))
    with pytest.raises(CapsError):
        verify("sha-0", "QgayPKawpkPSDYmwT/WM94uAlu0=", q(SIMPLE))


def test_other_hash_functions() -> None:
    info = parse_info(q(SIMPLE))
    expected = base64.b64encode(hashlib.sha256(verification_string(info).encode()).digest())
    assert caps_hash("sha-256", info) == expected.decode()


@pytest.mark.parametrize(
    "extra",
    [
        "<identity category='client' name='Exodus 0.9.1' type='pc'/>",
        "<feature var='http://jabber.org/protocol/muc'/>",
        "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>"
        "<value>a</value><value>b</value></field></x>",
    ],
)
def test_section_5_4_ill_formed_answers_are_refused(extra: str) -> None:
    with pytest.raises(CapsError):
        parse_info(q(SIMPLE.replace("</query>", extra + "</query>")))


def test_two_forms_of_one_form_type_are_refused() -> None:
    form = (
        "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>"
        "<value>urn:x</value></field></x>"
    )
    with pytest.raises(CapsError):
        parse_info(q(SIMPLE.replace("</query>", form + form + "</query>")))


def test_a_form_without_a_hidden_form_type_is_left_out() -> None:
    form = (
        "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'>"
        "<value>urn:x</value></field><field var='a'><value>1</value></field></x>"
    )
    info = parse_info(q(SIMPLE.replace("</query>", form + "</query>")))
    assert info.forms == ()
    assert caps_hash("sha-1", info) == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_cache_is_bounded_least_recently_used_first() -> None:
    cache = CapsCache(2)
    cache.put("sha-1", "a", {"x"})
    cache.put("sha-1", "b", {"y"})
    assert cache.get("sha-1", "a") == {"x"}  # now the most recently used
    cache.put("sha-1", "c", {"z"})
    assert cache.get("sha-1", "b") is None
    assert cache.get("sha-1", "a") == {"x"} and len(cache) == 2


def test_notify_nodes() -> None:
    features = ["urn:xmpp:avatar:metadata+notify", "urn:x", "+notify", "a/b c+notify"]
    assert notify_nodes(features) == {"urn:xmpp:avatar:metadata", "a/b c"}
