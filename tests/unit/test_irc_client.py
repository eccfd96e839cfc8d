"""The IRC client state machine: registration, CAP/SASL, 433, PING/PONG and the lag check."""

from __future__ import annotations

import base64

from bridges.irc import client as ic
from bridges.irc.protocol import parse


def make_client(**kw: object) -> ic.IrcClient:
    settings = ic.ClientSettings(nick="saxjax", channels=[("#sax", "")], **kw)  # type: ignore[arg-type]
    c = ic.IrcClient(settings, now=0.0)
    c.connection_made()
    return c


def feed(c: ic.IrcClient, raw: str, now: float = 1.0) -> list[bytes]:
    c.receive(parse(raw), now)
    return c.take_output()


def test_registration_sends_cap_ls_nick_user() -> None:
    c = make_client(password="pw")
    assert c.take_output() == [
        b"PASS pw\r\n",
        b"CAP LS 302\r\n",
        b"NICK saxjax\r\n",
        b"USER xmppd 0 * :xmppd IRC bridge\r\n",
    ]


def test_cap_negotiation_requests_only_offered_caps() -> None:
    c = make_client()
    c.take_output()
    assert feed(c, ":srv CAP * LS * :multi-prefix server-time") == []  # more to come
    assert feed(c, ":srv CAP * LS :message-tags away-notify") == [
        b"CAP REQ :server-time message-tags\r\n"
    ]
    assert feed(c, ":srv CAP saxjax ACK :server-time message-tags") == [b"CAP END\r\n"]
    assert c.caps_enabled == {"server-time", "message-tags"}


def test_cap_without_wanted_caps_ends_at_once_and_nak_ends() -> None:
    c = make_client()
    c.take_output()
    assert feed(c, ":srv CAP * LS :multi-prefix") == [b"CAP END\r\n"]
    c = make_client()
    c.take_output()
    feed(c, ":srv CAP * LS :server-time")
    assert feed(c, ":srv CAP * NAK :server-time") == [b"CAP END\r\n"]


def test_sasl_plain() -> None:
    c = make_client(sasl_username="bot", sasl_password="hunter2")
    c.take_output()
    assert feed(c, ":srv CAP * LS :sasl=PLAIN,EXTERNAL") == [b"CAP REQ sasl\r\n"]
    assert feed(c, ":srv CAP * ACK :sasl") == [b"AUTHENTICATE PLAIN\r\n"]
    out = feed(c, "AUTHENTICATE +")
    blob = base64.b64encode(b"bot\0bot\0hunter2")
    assert out == [b"AUTHENTICATE " + blob + b"\r\n"]
    assert feed(c, ":srv 903 saxjax :SASL authentication successful") == [b"CAP END\r\n"]


def test_sasl_failure_is_reported_and_registration_goes_on() -> None:
    c = make_client(sasl_username="bot", sasl_password="bad")
    c.take_output()
    feed(c, ":srv CAP * LS :sasl")
    feed(c, ":srv CAP * ACK :sasl")
    feed(c, "AUTHENTICATE +")
    assert feed(c, ":srv 904 saxjax :SASL authentication failed") == [b"CAP END\r\n"]
    assert any(isinstance(e, ic.Notice) and e.event == "irc_sasl_failed" for e in c.take_events())


def test_welcome_joins_channels_and_433_falls_back() -> None:
    c = make_client(fallback_nicks=["saxjax2"])
    c.take_output()
    assert feed(c, ":srv 433 * saxjax :Nickname is already in use") == [b"NICK saxjax2\r\n"]
    assert feed(c, ":srv 433 * saxjax2 :Nickname is already in use") == [b"NICK saxjax_\r\n"]
    assert feed(c, ":srv 001 saxjax_ :Welcome") == [b"JOIN #sax\r\n"]
    assert c.nick == "saxjax_"
    events = c.take_events()
    assert ic.Registered("saxjax_") in events
    # after registration a 433 (a failed reclaim) changes nothing
    assert feed(c, ":srv 433 saxjax_ saxjax :in use") == []
    assert c.nick == "saxjax_"


def test_nick_reclaim_after_interval() -> None:
    c = make_client(nick_reclaim_interval=30.0, ping_interval=1000.0)
    c.take_output()
    feed(c, ":srv 433 * saxjax :in use", now=0.0)
    feed(c, ":srv 001 saxjax_ :Welcome", now=0.0)
    c.tick(10.0)
    assert c.take_output() == []
    c.tick(31.0)
    assert c.take_output() == [b"NICK saxjax\r\n"]
    feed(c, ":saxjax_!u@h NICK :saxjax")
    assert c.nick == "saxjax"


def test_ping_is_answered_first() -> None:
    c = make_client()
    assert feed(c, "PING :irc.example")[0] == b"PONG irc.example\r\n"


def test_lag_check_pings_and_times_out() -> None:
    c = make_client(ping_interval=10.0, ping_timeout=5.0)
    c.take_output()
    feed(c, ":srv 001 saxjax :Welcome", now=0.0)
    c.take_events()
    c.tick(5.0)
    assert c.take_output() == []
    c.tick(10.0)
    (ping,) = c.take_output()
    token = parse(ping.rstrip()).params[0]
    c.receive(parse(f":srv PONG srv :{token}"), 10.3)
    assert c.lag is not None and abs(c.lag - 0.3) < 1e-9
    c.tick(20.3)
    assert len(c.take_output()) == 1  # next PING
    c.tick(24.0)
    assert not c.finished
    c.tick(25.4)
    assert c.finished
    assert any(isinstance(e, ic.ServerError) for e in c.take_events())


def test_other_traffic_does_not_satisfy_the_lag_check() -> None:
    c = make_client(ping_interval=10.0, ping_timeout=5.0)
    feed(c, ":srv 001 saxjax :Welcome", now=0.0)
    c.tick(10.0)
    for t in (11.0, 12.0, 13.0, 14.0):
        feed(c, ":bob!b@h PRIVMSG #sax :chatter", now=t)
    c.tick(15.1)
    assert c.finished


def test_registration_timeout() -> None:
    c = make_client(register_timeout=30.0)
    c.tick(29.0)
    assert not c.finished
    c.tick(30.0)
    assert c.finished


def test_privmsg_events_action_ctcp_and_own_echo() -> None:
    c = make_client()
    feed(c, ":srv 001 saxjax :Welcome")
    c.take_events()
    feed(c, "@time=2026-11-28T10:00:00.500Z :bob!b@h PRIVMSG #sax :hello")
    feed(c, ":bob!b@h PRIVMSG #sax :\x01ACTION waves\x01")
    feed(c, ":bob!b@h PRIVMSG saxjax :\x01VERSION\x01")
    feed(c, ":saxjax!x@h PRIVMSG #sax :my own echo")
    events = c.take_events()
    assert len(events) == 2
    first, second = events
    assert isinstance(first, ic.Message) and first.text == "hello" and not first.action
    assert first.time is not None and first.time.microsecond == 500000
    assert isinstance(second, ic.Message) and second.text == "waves" and second.action


def test_joins_parts_quits_kicks() -> None:
    c = make_client()
    feed(c, ":srv 001 saxjax :Welcome")
    c.take_events()
    feed(c, ":saxjax!u@h JOIN #sax")
    feed(c, ":bob!b@h JOIN :#sax")
    feed(c, ":bob!b@h PART #sax :bye")
    feed(c, ":bob!b@h QUIT :Ping timeout")
    feed(c, ":bob!b@h NICK bobby")
    assert c.take_events() == [
        ic.ChannelJoined("#sax"),
        ic.Joined("bob", "#sax"),
        ic.Parted("bob", "#sax", "bye"),
        ic.Quit("bob", "Ping timeout"),
        ic.NickChanged("bob", "bobby"),
    ]
    assert feed(c, ":op!o@h KICK #sax saxjax :out") == [b"JOIN #sax\r\n"]


def test_error_line_finishes_the_connection() -> None:
    c = make_client()
    feed(c, "ERROR :Closing link (Excess Flood)")
    assert c.finished
    assert c.take_events() == [ic.ServerError("Closing link (Excess Flood)")]
