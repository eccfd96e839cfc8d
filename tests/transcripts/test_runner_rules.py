"""The transcript runner's own rules: how expected stanzas match and how files parse.

A matcher that accepted too much would make every transcript pass; these pin down that
it refuses what README.md says it refuses.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from tests.transcripts.matching import mismatch
from tests.transcripts.script import ScriptError, load, parse_stanzas


def expected(xml: str) -> etree._Element:
    return parse_stanzas(xml)[0]


def received(xml: str) -> etree._Element:
    return etree.fromstring(f"<r xmlns='jabber:client'>{xml}</r>")[0]


@pytest.mark.parametrize(
    ("want", "got"),
    [
        ("<iq id='1' type='result'/>", "<iq type='result' id='1'/>"),
        ("<iq id='{any}' type='result'/>", "<iq type='result' id='x7'/>"),
        ("<message><body> hi </body></message>", "<message><body>hi</body></message>"),
        ("<message><body>{any}</body></message>", "<message><body>hello</body></message>"),
        (
            "<x xmlns='urn:a'><status code='110'/><status code='100'/></x>",
            "<x xmlns='urn:a'><status code='100'/><status code='110'/></x>",
        ),
        (
            "<error type='auth' t:partial='true'><forbidden xmlns='urn:s'/></error>",
            "<error type='auth' by='r'><forbidden xmlns='urn:s'/><text xmlns='urn:s'>no</text>"
            "</error>",
        ),
    ],
)
def test_matches(want: str, got: str) -> None:
    assert mismatch(expected(want), received(got)) is None


@pytest.mark.parametrize(
    ("want", "got", "reason"),
    [
        ("<iq id='1'/>", "<message id='1'/>", "element message"),
        ("<iq id='1'/>", "<iq id='2'/>", "attribute id is '2'"),
        ("<iq id='1'/>", "<iq/>", "attribute id missing"),
        ("<iq id='{any}'/>", "<iq/>", "attribute id missing"),
        ("<iq/>", "<iq id='1'/>", "unexpected attribute id"),
        ("<message><body>a</body></message>", "<message><body>b</body></message>", "text 'b'"),
        ("<message><body>{any}</body></message>", "<message><body/></message>", "no text"),
        ("<message/>", "<message><body>a</body></message>", "unexpected child"),
        ("<message><body>a</body></message>", "<message/>", "missing child"),
        (
            "<x xmlns='urn:a'><status code='110'/><status code='110'/></x>",
            "<x xmlns='urn:a'><status code='110'/><status code='100'/></x>",
            "code is '100'",
        ),
        (
            "<x xmlns='urn:a'><item a='1'/></x>",
            "<x xmlns='urn:b'><item a='1'/></x>",
            "element x[urn:b]",
        ),
        (
            "<error t:partial='true'><forbidden xmlns='urn:s'/></error>",
            "<error><not-allowed xmlns='urn:s'/></error>",
            "missing child",
        ),
    ],
)
def test_refuses(want: str, got: str, reason: str) -> None:
    problem = mismatch(expected(want), received(got))
    assert problem is not None and reason in problem, problem


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.scs"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_file_parses_into_header_and_steps(tmp_path: Path) -> None:
    script = load(
        write(
            tmp_path,
            "# What it does\n# and why.\n\n[Client] romeo\n\tjid: romeo@localhost/b\n"
            "\tpassword: secret\n\n[Server]\n\tmuc.history_default = 5\n\n"
            "[Nick] Romeo\n\tjid: romeo@localhost\n\n[Xfail] a reason\n\n"
            "romeo connects\n\nromeo sends:\n\t<presence/>\n\t<message/>\n\n"
            "romeo receives nothing\n\nwait 0.5 s\n\nromeo disconnects\n",
        )
    )
    assert script.title == "What it does and why."
    assert script.clients["romeo"].resource == "b"
    assert script.config == {"muc": {"history_default": 5}}
    assert [(n.nick, n.jid, n.room) for n in script.nicks] == [("Romeo", "romeo@localhost", "")]
    assert script.xfail == "a reason"
    assert [s.action for s in script.steps] == [
        "connects",
        "sends",
        "receives-nothing",
        "wait",
        "disconnects",
    ]
    assert len(script.steps[1].stanzas) == 2
    assert script.steps[1].line == 18


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("romeo connects\n", "no [Client]"),
        ("[Client] romeo\n\tjid: r@localhost\n\tpassword: s\nromeo dances\n", "not a step"),
        ("[Client] romeo\n\tjid: r@localhost\n\tpassword: s\nromeo sends:\n\t<a>\n", "not XML"),
        ("[Client] romeo\n\tjid: r@localhost\n\tpassword: s\nromeo sends:\n", "no stanza"),
        ("[Client] romeo\n\tjid: r@localhost\n", "needs jid: and password:"),
        ("[Bogus]\nromeo connects\n", "unknown section"),
    ],
)
def test_a_malformed_file_names_its_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScriptError, match=re.escape(message)):
        load(write(tmp_path, text))


def test_receives_in_any_order_is_its_own_step(tmp_path: Path) -> None:
    script = load(
        write(
            tmp_path,
            "[Client] romeo\n\tjid: romeo@localhost/b\n\tpassword: secret\n\n"
            "romeo connects\n\nromeo receives in any order:\n\t<presence/>\n\t<message/>\n",
        )
    )
    step = script.steps[1]
    assert step.action == "receives-in-any-order"
    assert [e.tag.split("}")[1] for e in step.stanzas] == ["presence", "message"]
