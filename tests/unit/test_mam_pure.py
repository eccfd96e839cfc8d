"""The pure parts of carbons and the accounts' archive: query parsing (XEP-0313 §4),
preferences (§6), what is archived and copied (XEP-0313 §7.1.1, XEP-0280 §6), forged
stanza-ids (XEP-0359), and the carbon wrappers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lxml import etree

from xmppd.mam.prefs import Prefs, parse_prefs, prefs_element
from xmppd.mam.query import (
    MAM,
    ArchivedMessage,
    MamPage,
    MamQuery,
    fit_page,
    parse_query,
    result_stanzas,
)
from xmppd.services.account_mam import _with, archivable, strip_forged
from xmppd.services.carbons import eligible, wrap
from xmppd.xml.errors import StanzaError

RSM = "http://jabber.org/protocol/rsm"
SID = "urn:xmpp:sid:0"


def query(form: dict[str, str] | None = None, rsm: str = "") -> etree._Element:
    fields = ""
    if form is not None:
        fields = "".join(f'<field var="{k}"><value>{v}</value></field>' for k, v in form.items())
        fields = f'<x xmlns="jabber:x:data" type="submit">{fields}</x>'
    if rsm:
        rsm = f'<set xmlns="{RSM}">{rsm}</set>'
    return etree.fromstring(f'<query xmlns="{MAM}" queryid="q1">{fields}{rsm}</query>')


def condition(exc: pytest.ExceptionInfo[StanzaError]) -> str:
    return exc.value.condition


# ------------------------------------------------------------------------- queries
def test_a_query_with_every_field() -> None:
    req = parse_query(
        query(
            {
                "FORM_TYPE": MAM,
                "with": "Bob@Example.org/Phone",
                "start": "2024-01-01T00:00:00Z",
                "end": "2024-01-02T00:00:00+01:00",
            },
            "<max>10</max><after>abc</after>",
        ),
        250,
        _with,
    )
    assert req.queryid == "q1"
    assert req.with_ == "bob@example.org/Phone"
    assert req.start == datetime(2024, 1, 1, tzinfo=UTC)
    assert req.end == datetime(2024, 1, 1, 23, tzinfo=UTC)
    assert (req.max, req.after, req.before) == (10, "abc", None)


def test_an_empty_before_asks_for_the_last_page_and_max_is_clamped() -> None:
    req = parse_query(query(rsm="<max>1000000000</max><before/>"), 250, _with)
    assert (req.max, req.before) == (250, "")
    assert parse_query(query(), 20, _with).max == 20


@pytest.mark.parametrize(
    ("form", "rsm", "expected"),
    [
        ({"start": "yesterday"}, "", "bad-request"),
        ({"end": "2024-13-01T00:00:00Z"}, "", "bad-request"),
        ({"start": "2024-01-01T00:00:00"}, "", "bad-request"),  # no zone
        ({"with": "@@"}, "", "bad-request"),
        ({"FORM_TYPE": "urn:xmpp:mam:1"}, "", "bad-request"),
        ({"colour": "blue"}, "", "feature-not-implemented"),
        (None, "<max>lots</max>", "bad-request"),
        (None, "<max>-1</max>", "bad-request"),
        (None, "<max>" + "9" * 5000 + "</max>", "bad-request"),
    ],
)
def test_bad_queries(form: dict[str, str] | None, rsm: str, expected: str) -> None:
    with pytest.raises(StanzaError) as exc:
        parse_query(query(form, rsm), 250, _with)
    assert condition(exc) == expected


def test_results_come_from_the_archive_and_fin_has_first_last() -> None:
    stamp = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    body = '<message xmlns="jabber:client" from="a@x/r" to="b@x"><body>hi</body></message>'
    page = MamPage([ArchivedMessage("id1", stamp, body), ArchivedMessage("id2", stamp, body)],
                   complete=True)  # fmt: skip
    messages, fin = result_stanzas(MamQuery("q1"), page, "b@x")
    assert [m.get("from") for m in messages] == ["b@x", "b@x"]
    result = messages[0][0]
    assert (result.get("queryid"), result.get("id")) == ("q1", "id1")
    assert result.find(".//{urn:xmpp:delay}delay").get("stamp") == "2024-05-06T07:08:09.123Z"
    assert result.find(".//{jabber:client}body").text == "hi"
    assert fin.get("complete") == "true"
    assert fin.findtext(f"{{{RSM}}}set/{{{RSM}}}first") == "id1"
    assert fin.findtext(f"{{{RSM}}}set/{{{RSM}}}last") == "id2"
    assert fin.find(f"{{{RSM}}}set/{{{RSM}}}count") is None  # not computed for accounts


def test_an_incomplete_empty_page() -> None:
    _messages, fin = result_stanzas(MamQuery(None), MamPage([], complete=False), "b@x")
    assert fin.get("complete") is None
    assert fin.find(f"{{{RSM}}}set/{{{RSM}}}first") is None


# --------------------------------------------------------------------------- prefs
def prefs(xml: str) -> etree._Element:
    return etree.fromstring(f'<prefs xmlns="{MAM}" {xml}')


def test_prefs_parse_and_round_trip() -> None:
    got = parse_prefs(
        prefs(
            'default="roster"><always><jid>Carol@Example.org/desk</jid></always>'
            "<never><jid>spam@example.org</jid></never></prefs>"
        ),
        10,
    )
    assert got == Prefs("roster", frozenset({"carol@example.org"}), frozenset({"spam@example.org"}))
    assert parse_prefs(prefs_element(got), 10) == got


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        ('default="sometimes"/>', "bad-request"),
        ("/>", "bad-request"),
        ('default="always"><never><jid>@@</jid></never></prefs>', "jid-malformed"),
        (
            'default="always"><always>' + "<jid>a@x</jid><jid>b@x</jid><jid>c@x</jid>"
            "</always></prefs>",
            "policy-violation",
        ),
    ],
)
def test_bad_prefs(xml: str, expected: str) -> None:
    with pytest.raises(StanzaError) as exc:
        parse_prefs(prefs(xml), 2)
    assert condition(exc) == expected


def test_prefs_decide() -> None:
    p = Prefs("never", frozenset({"a@x", "both@x"}), frozenset({"b@x", "both@x"}))
    assert (p.decide("a@x"), p.decide("b@x"), p.decide("c@x"), p.decide("both@x")) == (
        True, False, False, False,
    )  # fmt: skip
    assert Prefs("always").decide("c@x") is True
    assert Prefs("roster").decide("c@x") is None


# ------------------------------------------------------- what is archived and copied
def msg(attrs: str, inner: str = "") -> etree._Element:
    return etree.fromstring(f'<message xmlns="jabber:client" {attrs}>{inner}</message>')


BODY = "<body>hi</body>"


@pytest.mark.parametrize(
    ("attrs", "inner", "archived", "copied"),
    [
        ('type="chat"', BODY, True, True),
        ('type="chat"', '<active xmlns="http://jabber.org/protocol/chatstates"/>', False, True),
        ("", BODY, True, True),
        ('type="normal"', "", False, False),
        ('type="headline"', BODY, False, False),
        ('type="error"', BODY, False, False),
        ('type="groupchat"', BODY, False, False),
        ('type="chat"', BODY + '<no-store xmlns="urn:xmpp:hints"/>', False, True),
        ('type="chat"', BODY + '<no-permanent-store xmlns="urn:xmpp:hints"/>', False, True),
        ('type="chat"', '<store xmlns="urn:xmpp:hints"/>', True, True),
        ('type="chat"', BODY + '<private xmlns="urn:xmpp:carbons:2"/>', True, False),
        ('type="chat"', BODY + '<no-copy xmlns="urn:xmpp:hints"/>', True, False),
    ],
)
def test_what_is_archived_and_copied(attrs: str, inner: str, archived: bool, copied: bool) -> None:
    stanza = msg(attrs, inner)
    assert archivable(stanza) is archived
    assert eligible(stanza) is copied


def test_only_stanza_ids_by_the_recipient_are_removed() -> None:
    stanza = msg(
        'type="chat"',
        BODY + f'<stanza-id xmlns="{SID}" by="bob@x" id="forged"/>'
        f'<stanza-id xmlns="{SID}" by="room@conf.x" id="keep"/>',
    )
    assert strip_forged(stanza, "bob@x") == 1
    assert [e.get("id") for e in stanza.iter(f"{{{SID}}}stanza-id")] == ["keep"]


def test_a_carbon_wraps_the_original_from_the_bare_jid() -> None:
    original = msg('type="chat" from="bob@x/b" to="alice@x/desk"', BODY)
    carbon = wrap(original, "received", "alice@x")
    assert (carbon.get("from"), carbon.get("type"), carbon.get("to")) == ("alice@x", "chat", None)
    fwd = carbon.find("{urn:xmpp:carbons:2}received/{urn:xmpp:forward:0}forwarded")
    assert fwd is not None and fwd[0].get("from") == "bob@x/b"


def test_a_page_of_large_messages_is_cut_to_fit_the_send_queue() -> None:
    stamp = datetime(2024, 1, 1, tzinfo=UTC)
    big = [ArchivedMessage(f"id{i}", stamp, "x" * 1000) for i in range(5)]
    page = MamPage(big, complete=True)
    forward = fit_page(page, 3200, backwards=False)
    assert [m.stanza_id for m in forward.messages] == ["id0", "id1"]
    assert forward.complete is False
    backward = fit_page(page, 3200, backwards=True)
    assert [m.stanza_id for m in backward.messages] == ["id3", "id4"]
    assert fit_page(page, 10, backwards=False).messages == big[:1]  # always one
    assert fit_page(page, 10**6, backwards=False) is page


def test_extended_fields_only_where_advertised() -> None:
    form = {"after-id": "a", "before-id": "b", "ids": "c"}
    with pytest.raises(StanzaError) as exc:
        parse_query(query(form), 250, _with)
    assert condition(exc) == "feature-not-implemented"
    el = query(form)
    el.append(etree.Element(f"{{{MAM}}}flip-page"))
    req = parse_query(el, 250, _with, extended=True)
    assert (req.after_id, req.before_id, req.ids, req.flip) == ("a", "b", ("c",), True)


def test_too_many_ids_is_a_policy_violation() -> None:
    el = etree.fromstring(
        f'<query xmlns="{MAM}"><x xmlns="jabber:x:data" type="submit"><field var="ids">'
        + "".join(f"<value>i{n}</value>" for n in range(3))
        + "</field></x></query>"
    )
    with pytest.raises(StanzaError) as exc:
        parse_query(el, 2, _with, extended=True)
    assert condition(exc) == "policy-violation"


def test_a_flipped_page_is_sent_newest_first() -> None:
    stamp = datetime(2024, 1, 1, tzinfo=UTC)
    body = '<message xmlns="jabber:client"><body>x</body></message>'
    page = MamPage([ArchivedMessage(f"id{i}", stamp, body) for i in range(3)], complete=True)
    messages, fin = result_stanzas(MamQuery(None, flip=True), page, "b@x")
    assert [m[0].get("id") for m in messages] == ["id2", "id1", "id0"]
    assert fin.findtext(f"{{{RSM}}}set/{{{RSM}}}first") == "id0"
