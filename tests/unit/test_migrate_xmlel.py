"""fast_xml's ``#xmlel{}`` terms → XML text: namespaces, escaping, and refusals."""

from __future__ import annotations

import pytest
from lxml import etree

from xmppd.migrate.erlang_terms import parse_term
from xmppd.migrate.xmlel import to_xml

MESSAGE = r"""{xmlel,<<"message">>,
    [{<<"xml:lang">>,<<"en">>},{<<"to">>,<<"a@b">>},{<<"type">>,<<"chat">>}],
    [{xmlel,<<"body">>,[],[{xmlcdata,<<"1 < 2 & \"q\" ]]>">>}]},
     {xmlel,<<"x">>,
        [{<<"xmlns">>,<<"jabber:x:foo">>},{<<"xmlns:p">>,<<"urn:p">>},{<<"p:a">>,<<"v">>}],
        [{xmlel,<<"p:y">>,[],[]},{xmlcdata,[<<"io">>,"list"]}]},
     {xmlcdata,<<"tail">>}]}"""


def test_namespaces_and_escaping() -> None:
    xml = to_xml(parse_term(MESSAGE), "jabber:client")
    assert xml == (
        '<message xmlns="jabber:client" xml:lang="en" to="a@b" type="chat">'
        '<body>1 &lt; 2 &amp; "q" ]]&gt;</body>'
        '<x xmlns="jabber:x:foo" xmlns:p="urn:p" p:a="v"><p:y/>iolist</x>tail</message>'
    )
    el = etree.fromstring(xml)
    assert el.find("{jabber:x:foo}x/{urn:p}y") is not None
    assert el.find("{jabber:x:foo}x").get("{urn:p}a") == "v"


def test_an_element_keeps_its_own_namespace() -> None:
    card = parse_term(b'{xmlel,<<"vCard">>,[{<<"xmlns">>,<<"vcard-temp">>}],[]}')
    assert to_xml(card, "jabber:client") == '<vCard xmlns="vcard-temp"/>'


@pytest.mark.parametrize(
    ("term", "message"),
    [
        (b'{xmlel,<<"a">>,[],[{xmlcdata,<<1>>}]}', "XML compatible"),
        (b'{xmlel,<<"q:a">>,[],[]}', "undeclared namespace prefix"),
        (b'{xmlel,<<"a">>,[x],[]}', "not {Name, Value}"),
        (b'{xmlel,<<"a">>,[]}', "not an {xmlel"),
        (b'{xmlel,<<"a">>,[],[{xmlcdata,<<255>>}]}', "utf-8"),
    ],
)
def test_what_xml_cannot_hold_is_refused(term: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_xml(parse_term(term))
