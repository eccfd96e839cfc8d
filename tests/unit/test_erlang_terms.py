"""The Erlang term text reader, on text that Erlang itself printed and on generated terms.

tests/data/erlang_p_output.txt was written by OTP 25's ``io:format(F, "~p.~n", [T])`` to a
file opened with ``[write]`` (no encoding: each character one byte), exactly as ejabberd's
``dump_to_textfile`` does; tests/data/erlang_p_output.escript made it.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmppd.migrate.erlang_terms import (
    Atom,
    Charlist,
    ErlangSyntaxError,
    ImproperList,
    Map,
    Opaque,
    format_term,
    iter_term_texts,
    iter_terms,
    parse_term,
    text,
)

DATA = Path(__file__).parent.parent / "data"


def _real_terms() -> list[tuple[int, object]]:
    with (DATA / "erlang_p_output.txt").open(encoding="latin-1", newline="") as f:
        return list(iter_terms(f))


def test_what_erlang_printed_reads_back() -> None:
    terms = _real_terms()
    assert [line for line, _ in terms] == [1, 2, 3, 4, 5, 6, 7, 23, 24]
    t = dict(enumerate(term for _, term in terms))
    assert t[0][0] == "passwd" and isinstance(t[0][0], Atom)
    assert t[0][1] == (b"alice", b"example.org")
    assert t[1] == (
        Atom("a"),
        Atom("Quoted Atom"),
        Atom("with'quote"),
        [],
        [],
        b"",
        [97, 98, 99],
        [1, 2, 3],
        ImproperList((Atom("a"),), Atom("b")),
        ImproperList((1, 2), Atom("c")),
    )
    assert t[2] == (255, -42, 123456789012345678901234567890, 1.5, -0.001, 1e100, 2.5e-10, 97, 10)
    assert t[3][0] == bytes([1, 2, 3, 200])
    assert text(t[3][1]) == "héllo"  # the raw UTF-8 bytes ~p wrote, read as Latin-1
    assert text(t[3][2]) == 'tab\there"q\\'
    assert text(t[3][3]) == "λ€"
    assert t[3][4] == "é" and t[3][5] == b"\x00"
    assert t[4] == Map(((Atom("a"), 1), ([1], Map(())), (b"k", [Atom("x")])))
    assert t[4].get([1]) == Map(())
    assert isinstance(t[5][0], Opaque) and t[5][0].text == "<0.9.0>"
    assert t[5][1].text.startswith("#Ref<0.")
    assert t[6][1] == [b"a" * 20] * 30 and text(t[6][2]) == "xy" * 200
    assert text(t[7][1]) == "héllo ☺ 😀"
    assert text(t[8][1]) == "héllo ☺"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("16#ff", 255),
        ("-16#FF", -255),
        ("2#1010", 10),
        ("36#Z", 35),
        ("1_000_000", 1000000),
        ("+7", 7),
        ("$\\x{263A}", 0x263A),
        ("$\\^a", 1),
        ("$\\s", 32),
        ("$\\101", 65),
        ('$"', 34),
        ('"a\\x41\\x{42}\\103\\e\\d\\z"', [97, 65, 66, 67, 27, 127, 122]),
        ('"ab"\n   "cd"', [97, 98, 99, 100]),
        ('<<"ab" "c">>', b"abc"),
        ('<<"é☺"/utf8>>', "é☺".encode()),
        ('<<"x", 1, $a>>', b"x\x01a"),
        ("[a|[b|[c]]]", [Atom("a"), Atom("b"), Atom("c")]),
        ("[a|[b|c]]", ImproperList((Atom("a"), Atom("b")), Atom("c"))),
        ("'hello'", "hello"),
        ("node@host", "node@host"),
        ("% a comment\n{x} % another\n.", (Atom("x"),)),
        ("#Fun<erl_eval.6.123>", Opaque("#Fun<erl_eval.6.123>")),
        ("#Port<0.5>", Opaque("#Port<0.5>")),
    ],
)
def test_syntax(source: str, expected: object) -> None:
    assert parse_term(source) == expected


@pytest.mark.parametrize(
    ("source", "line", "column", "message"),
    [
        ("{a,b", 1, 5, "expected ',' or '}' in a tuple"),
        ("{a,\n  B}", 2, 3, "a variable is not a term"),
        ("[1,2", 1, 5, "expected ',' or ']' or '|' in a list"),
        ('"abc', 1, 1, "string not closed"),
        ("'abc", 1, 1, "quoted atom not closed"),
        ("<<256>>", 1, 3, "a binary segment must be a byte"),
        ("<<1:4>>", 1, 3, "bit strings"),
        ('<<"☺">>', 1, 3, "a character above 255"),
        ('<<"a"/utf16>>', 1, 7, "only /utf8"),
        ("#rec{a=1}", 1, 1, "record syntax is not a term"),
        ("12abc", 1, 1, "malformed number"),
        ("37#1", 1, 1, "base 37 is outside 2..36"),
        ("2#12", 1, 1, "digit out of range for base 2"),
        ("{a} {b}", 1, 5, "unexpected text after the term"),
        ("{a}", 1, 4, "expected '.' after the term"),
        ("", 1, 1, "unexpected end of text"),
        ('"\\x{110000}"', 1, 2, "character code above 16#10FFFF"),
        ("1.0e999", 1, 1, "float out of range"),
        ("<1.2>", 1, 1, "expected a pid"),
        ("#{a}", 1, 4, "expected '=>' after a map key"),
    ],
)
def test_errors_say_where(source: str, line: int, column: int, message: str) -> None:
    with pytest.raises(ErlangSyntaxError) as caught:
        parse_term(source, dot=source == "{a}")
    assert (caught.value.line, caught.value.column) == (line, column)
    assert message in caught.value.message


def test_error_lines_count_from_the_given_line() -> None:
    with pytest.raises(ErlangSyntaxError) as caught:
        parse_term("{a,\n\n  [x|]}", line=40)
    assert (caught.value.line, caught.value.column) == (42, 6)


def test_bytes_are_read_as_latin1() -> None:
    assert parse_term('<<"h\xc3\xa9">>'.encode("latin-1")) == "hé".encode()


def test_text_of_old_utf8_byte_strings_and_code_points() -> None:
    assert text(Charlist(list("hé".encode()))) == "hé"
    assert text([104, 233]) == "hé"  # not valid UTF-8: code points
    assert text(b"ok") == "ok"
    with pytest.raises(TypeError):
        text((1,))


def test_stream_finds_terms_across_chunk_edges_and_reports_lines() -> None:
    src = (
        "{tables,[{passwd,[]}]}.\n"
        '{a,"x. y",\'q. r\',$.,<<"%">>}. % c.\n'
        "\n"
        "  {b,\n 1.5}.\n"
        '{c,$"}.\n'
        "{trailing"
    )
    for chunk in (1, 2, 3, 7, 1 << 16):
        texts = list(iter_term_texts(io.StringIO(src), chunk=chunk))
        assert [line for line, _ in texts] == [1, 2, 4, 6, 7], chunk
        assert texts[2][1] == "{b,\n 1.5}."
        assert parse_term(texts[1][1], dot=True) == (
            Atom("a"),
            [120, 46, 32, 121],
            Atom("q. r"),
            46,
            b"%",
        )
    with pytest.raises(ErlangSyntaxError) as caught:
        parse_term(texts[4][1], line=texts[4][0], dot=True)
    assert (caught.value.line, caught.value.column) == (7, 10)
    with pytest.raises(ErlangSyntaxError) as caught:
        list(iter_terms(io.StringIO("{a}.\n{b}.\n{c,\n")))
    assert caught.value.line == 4


# -- round trips ----------------------------------------------------------------------------

_atoms = st.text(min_size=0, max_size=12).map(Atom)
_codes = st.integers(0, 0x10FFFF).filter(lambda c: not 0xD800 <= c <= 0xDFFF)
_scalars = (
    _atoms
    | st.integers(-(2**200), 2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.binary(max_size=20)
    | st.lists(_codes, max_size=12).map(Charlist)
    | st.sampled_from([Opaque("<0.1.0>"), Opaque("#Ref<0.1.2.3>")])
)


def _compound(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    not_a_list = children.filter(lambda t: not isinstance(t, list | ImproperList))
    return (
        st.lists(children, max_size=5)
        | st.lists(children, max_size=5).map(tuple)
        | st.builds(
            lambda items, tail: ImproperList(tuple(items), tail),
            st.lists(children, min_size=1, max_size=4),
            not_a_list,
        )
        | st.lists(st.tuples(children, children), max_size=4).map(lambda p: Map(tuple(p)))
    )


terms = st.recursive(_scalars, _compound, max_leaves=15)


@given(terms)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_format_then_parse_is_identity(term: object) -> None:
    assert parse_term(format_term(term)) == term


@given(st.lists(terms, max_size=4), st.integers(1, 40))
@settings(max_examples=100, deadline=None)
def test_stream_of_formatted_terms(items: list[object], chunk: int) -> None:
    src = "".join(format_term(t) + ".\n" for t in items)
    assert [t for _, t in iter_terms(io.StringIO(src), chunk=chunk)] == items
