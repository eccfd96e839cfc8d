"""The bench client's XEP-0115 caps: the ver servers verify, and the disco#info answer."""

from __future__ import annotations

from lxml import etree

from bench.loadgen import xmpp
from bench.loadgen.mam_page import archive_rows, query_iq


def test_ver_matches_the_xep_0115_worked_example() -> None:
    # XEP-0115 §5.2 simple generation example (Exodus 0.9.1)
    caps = xmpp.Caps(
        ["http://jabber.org/protocol/disco#items", "http://jabber.org/protocol/muc"],
        name="Exodus 0.9.1",
    )
    assert caps.ver == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_answer_echoes_node_and_id_and_lists_the_notify_feature() -> None:
    caps = xmpp.Caps(["urn:xmpp:avatar:metadata+notify"])
    query = (
        "<iq type='get' id='d&apos;1' from='localhost'><query "
        "xmlns='http://jabber.org/protocol/disco#info' node='n#v'/></iq>"
    )
    reply = etree.fromstring(caps.answer(query))
    assert reply.get("type") == "result" and reply.get("to") == "localhost"
    assert reply.get("id") == "d'1"
    q = reply[0]
    assert q.get("node") == "n#v"
    feats = {f.get("var") for f in q.findall("{http://jabber.org/protocol/disco#info}feature")}
    assert "urn:xmpp:avatar:metadata+notify" in feats
    assert caps.answer("<iq type='result' id='x'/>") is None


def test_archive_rows_and_query_are_well_formed() -> None:
    rows = list(archive_rows("localhost", 4, 3))
    assert [r[0] for r in rows] == [f"bench-{i:08d}" for i in range(4)]
    assert rows[3][2] == "bench1@localhost" and rows[0][3] and not rows[1][3]
    for row in rows:
        assert etree.fromstring(row[4]).tag == "{jabber:client}message"
    iq = etree.fromstring(query_iq("q1", 50, "<before/>", "bench2@localhost"))
    assert iq.find(".//{jabber:x:data}value[.='bench2@localhost']") is not None
