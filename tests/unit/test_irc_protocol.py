"""IRC line parsing/serialising and the line buffer (bridges/irc/protocol.py)."""

from __future__ import annotations

import pytest

from bridges.irc.protocol import LineBuffer, LineError, decode, make, parse, serialize


def test_parse_privmsg_with_prefix_and_trailing() -> None:
    line = parse(b":bob!b@host PRIVMSG #sax :hello there :)")
    assert line.command == "PRIVMSG"
    assert line.prefix == "bob!b@host"
    assert line.nick == "bob"
    assert line.params == ["#sax", "hello there :)"]


def test_parse_tags_with_escapes() -> None:
    line = parse(rb"@time=2026-11-28T10:00:00.000Z;msgid=a\sb\:c\\d;flag :srv 001 me :Welcome")
    assert line.tags == {"time": "2026-11-28T10:00:00.000Z", "msgid": "a b;c\\d", "flag": ""}
    assert line.command == "001"
    assert line.params == ["me", "Welcome"]


def test_parse_without_prefix_and_numeric_params() -> None:
    line = parse("PING :irc.example")
    assert (line.command, line.params, line.prefix) == ("PING", ["irc.example"], None)
    cap = parse(":srv CAP * LS * :multi-prefix sasl=PLAIN,EXTERNAL")
    assert cap.params == ["*", "LS", "*", "multi-prefix sasl=PLAIN,EXTERNAL"]


def test_parse_rejects_empty() -> None:
    with pytest.raises(LineError):
        parse(b"   ")
    with pytest.raises(LineError):
        parse(b":prefix-only")


def test_undecodable_bytes_fall_back_to_latin1() -> None:
    assert decode(b"caf\xe9") == "café"
    assert parse(b":x PRIVMSG #c :caf\xe9").params[1] == "café"
    assert decode("ünïcode".encode()) == "ünïcode"


def test_serialize_roundtrip_and_trailing_colon() -> None:
    assert make("PRIVMSG", "#sax", "hi there") == b"PRIVMSG #sax :hi there\r\n"
    assert make("NICK", "bot") == b"NICK bot\r\n"
    assert make("PRIVMSG", "#sax", ":)") == b"PRIVMSG #sax ::)\r\n"
    assert make("PRIVMSG", "#sax", "") == b"PRIVMSG #sax :\r\n"
    line = parse(serialize(parse(b"@a=b\\sc :p!u@h PRIVMSG #x :y z")).rstrip(b"\r\n"))
    assert line.tags == {"a": "b c"} and line.params == ["#x", "y z"]


def test_serialize_never_lets_a_parameter_inject_a_command() -> None:
    data = make("PRIVMSG", "#sax", "hi\r\nQUIT :gotcha\x00")
    assert data.count(b"\r\n") == 1 and data.endswith(b"\r\n")
    assert b"\x00" not in data


def test_line_buffer_joins_fragments_and_strips_crlf() -> None:
    buf = LineBuffer()
    assert buf.feed(b"PING :a\r\nPRIVMSG #c :par") == [b"PING :a"]
    assert buf.pending == len(b"PRIVMSG #c :par")
    assert buf.feed(b"tial\nNOTICE x :y\r\n") == [b"PRIVMSG #c :partial", b"NOTICE x :y"]
    assert buf.pending == 0


def test_line_buffer_keeps_a_long_line_under_the_limit() -> None:
    buf = LineBuffer(limit=2000)
    long = b":a PRIVMSG #c :" + b"x" * 900
    assert buf.feed(long + b"\r\n") == [long]
    assert buf.dropped == 0


def test_line_buffer_drops_an_endless_line_and_recovers() -> None:
    buf = LineBuffer(limit=1000)
    assert buf.feed(b"x" * 600) == []
    assert buf.feed(b"x" * 600) == []  # over the limit: discarded, not buffered
    assert buf.pending == 0 and buf.dropped == 1
    assert buf.feed(b"y" * 5000) == []  # still the same line
    assert buf.dropped == 1
    assert buf.feed(b"tail\r\nPING :ok\r\n") == [b"PING :ok"]
    assert buf.dropped == 1


SANS_IO = ["protocol", "client", "text", "flood", "muc", "relay", "state", "config"]


def test_the_sans_io_modules_import_no_io_library() -> None:
    """DESIGN.md: the protocol core imports no trio/socket; only bridge.py is the shell."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    forbidden = ["trio", "asyncio", "socket", "ssl", "selectors", "anyio"]
    code = (
        "import importlib, json, sys\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        f"for m in {SANS_IO!r}: importlib.import_module('bridges.irc.' + m)\n"
        f"print(json.dumps(sorted(m for m in {forbidden!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, cwd=root
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_cli_reports_a_bad_config_and_exits_2(tmp_path: object) -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    bad = Path(str(tmp_path)) / "irc.toml"
    bad.write_text('[irc]\nservers = ["x:1"]\nchannel = "nochan"\n')
    result = subprocess.run(
        [sys.executable, "-m", "bridges.irc", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "IRCBRIDGE_XMPP_SECRET": "do-not-print-me"},
    )
    assert result.returncode == 2
    assert "config error" in result.stderr
    assert "do-not-print-me" not in result.stderr + result.stdout
    good = Path(str(tmp_path)) / "good.toml"
    good.write_text(
        '[xmpp]\ndomain = "irc.localhost"\nroom = "sax@conference.localhost"\n'
        '[irc]\nservers = ["x:1"]\nchannel = "#sax"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "bridges.irc", "--config", str(good), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "IRCBRIDGE_XMPP_SECRET": "do-not-print-me"},
    )
    assert result.returncode == 0, result.stderr
    assert "config ok: sax@conference.localhost <-> #sax" in result.stdout
    assert "do-not-print-me" not in result.stderr + result.stdout
