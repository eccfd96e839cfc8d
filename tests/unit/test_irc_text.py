"""Formatting codes, splitting at UTF-8 and word boundaries, relay formats, flood control."""

from __future__ import annotations

import pytest

from bridges.irc.flood import BoundedQueue, TokenBucket
from bridges.irc.relay import Formatter
from bridges.irc.text import (
    ZWJ,
    parse_ctcp_action,
    privmsg_budget,
    protect_nick,
    split_line,
    split_message,
    strip_formatting,
    utf8_cut,
)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("\x02bold\x02 text", "bold text"),
        ("\x0304red\x03 and \x0312,01blue on black\x0f", "red and blue on black"),
        ("\x034,5x\x03", "x"),
        ("\x03,5 not a bg\x03", ",5 not a bg"),  # a comma without fg is text
        (
            "\x1ditalic\x1d \x1funder\x1f \x16rev\x16 \x11mono\x11 \x1estrike",
            "italic under rev mono strike",
        ),
        ("\x04ff0000hex\x04", "hex"),
        ("12\x03 3", "12 3"),
        ("nul\x00bell\x07", "nulbell"),
        ("<a href='x'>&amp;</a>", "<a href='x'>&amp;</a>"),
    ],
)
def test_strip_formatting(raw: str, clean: str) -> None:
    assert strip_formatting(raw) == clean


def test_ctcp_action() -> None:
    assert parse_ctcp_action("\x01ACTION waves\x01") == "waves"
    assert parse_ctcp_action("\x01ACTION waves") == "waves"
    assert parse_ctcp_action("\x01VERSION\x01") is None
    assert parse_ctcp_action("hello") is None


def test_utf8_cut_never_tears_a_character() -> None:
    text = "aé€😀"  # 1 + 2 + 3 + 4 bytes
    assert [utf8_cut(text, n) for n in range(11)] == [0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4]


def test_split_line_prefers_word_boundaries() -> None:
    text = "the quick brown fox jumps over the lazy dog"
    parts = split_line(text, 12)
    assert all(len(p.encode()) <= 12 for p in parts)
    assert " ".join(parts) == text
    assert parts[0] == "the quick"


def test_split_line_cuts_long_words_at_character_boundaries() -> None:
    word = "€" * 50  # 150 bytes, no space
    parts = split_line(word, 20)
    assert all(len(p.encode()) <= 20 for p in parts)
    assert "".join(parts) == word
    assert [len(p) for p in parts[:2]] == [6, 6]


def test_split_message_multiline_with_cap_and_notice() -> None:
    text = "\n".join(f"line {i}" for i in range(10)) + "\n\n"
    out = split_message(text, 100, 4)
    assert out == ["line 0", "line 1", "line 2", "(… 7 more lines)"]
    assert split_message("one\r\ntwo", 100, 4) == ["one", "two"]


def test_split_message_5000_characters_fits_512_bytes() -> None:
    paragraph = " ".join(f"wörd{i}<&>" for i in range(500))  # ~5000 chars, multibyte
    text = paragraph[:2500] + "\n" + paragraph[2500:5000]
    budget = privmsg_budget("saxjax", "#sax") - len(b"<alice> ")
    out = split_message(text, budget, 1000)
    assert all(len(p.encode()) <= budget for p in out)
    joined = " ".join(out)
    assert joined.split() == text.split()


def test_privmsg_budget_counts_the_servers_prefix() -> None:
    budget = privmsg_budget("bot", "#c")
    line = f":bot!{'u' * 10}@{'h' * 63} PRIVMSG #c :{'x' * budget}\r\n"
    assert len(line.encode()) == 512


def test_formatter_both_directions() -> None:
    f = Formatter(nick_protection=False, max_lines=3)
    assert f.irc_message("bob", "\x02hi\x02 <&>", False) == "<bob> hi <&>"
    assert f.irc_message("bob", "waves", True) == "/me bob waves"
    assert f.irc_message("bob", "\x0304\x03", False) is None
    assert f.room_message("alice", "hi <&>", 400) == ["<alice> hi <&>"]
    assert f.room_message("alice", "/me waves", 400) == ["\x01ACTION alice waves\x01"]
    lines = f.room_message("alice", "a\nb\nc\nd\ne", 400)
    assert lines == ["<alice> a", "<alice> b", "<alice> (… 3 more lines)"]


def test_nick_protection() -> None:
    assert protect_nick("alice") == "a" + ZWJ + "lice"
    assert protect_nick("a") == "a"
    f = Formatter(nick_protection=True, max_lines=3)
    assert f.irc_message("bob", "hi", False) == f"<b{ZWJ}ob> hi"


def test_irc_nicks_with_control_characters_become_room_text() -> None:
    # found by fuzz/targets/bridge_text.py: a prefix nick with \x16 or \x04 reached the
    # room stanza's text, and lxml refuses it (ValueError in the room sender)
    f = Formatter(nick_protection=False, max_lines=3)
    assert f.irc_part("b\x16o\x04b", "#c", "") == "*** bob left #c"
    assert f.irc_kick("a\x01", "\x1bop", "") == "*** a was kicked by op"
    assert f.irc_message("b\x00ob", "hi", False) == "<bob> hi"


def test_token_bucket_burst_then_rate() -> None:
    b = TokenBucket(burst=10, rate=1.0, now=100.0)
    assert sum(b.take(100.0) for _ in range(15)) == 10
    assert b.wait_time(100.0) == pytest.approx(1.0)
    assert not b.take(100.5)
    assert b.wait_time(100.5) == pytest.approx(0.5)
    assert b.take(101.0)
    assert not b.take(101.0)
    # refill is capped at the burst
    assert sum(b.take(1000.0) for _ in range(20)) == 10


def test_token_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 1.0, 0.0)
    with pytest.raises(ValueError):
        TokenBucket(1, 0.0, 0.0)


def test_bounded_queue_counts_overflow() -> None:
    q: BoundedQueue[int] = BoundedQueue(3)
    assert [q.put(i) for i in range(5)] == [True, True, True, False, False]
    assert q.take_dropped() == 2 and q.take_dropped() == 0
    q.put_front(-1)
    assert [q.pop() for _ in range(len(q))] == [-1, 0, 1, 2]
