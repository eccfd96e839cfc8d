"""The sans-IO BOSH session (XEP-0124/0206): one test per rule, bytes in, explicit times."""

from __future__ import annotations

import hashlib

import pytest
from lxml import etree

from xmppd.bosh.body import BadBody, BodyRequest, parse_body, render_body, terminate_body
from xmppd.bosh.config import BoshConfig
from xmppd.bosh.session import BoshSession, CreationError, Hold, Respond

NS = "http://jabber.org/protocol/httpbind"
RID = 1_000_000
SID = "s" * 32


def body(rid: int, payload: str = "", sid: str | None = SID, **attrs: str) -> BodyRequest:
    extra = "".join(f" {k.replace('__', ':')}='{v}'" for k, v in attrs.items())
    s = f" sid='{sid}'" if sid else ""
    raw = (
        f"<body xmlns='{NS}' xmlns:xmpp='urn:xmpp:xbosh' rid='{rid}'{s}{extra}>{payload}</body>"
    ).encode()
    parsed = parse_body(raw)
    assert isinstance(parsed, BodyRequest), parsed
    return parsed


def create(now: float = 0.0, limits: BoshConfig | None = None, **attrs: str) -> BoshSession:
    params = {"to": "localhost", "wait": "60", "hold": "1", "ver": "1.6"} | attrs
    return BoshSession(SID, body(RID, sid=None, **params), "localhost", limits or BoshConfig(), now)


def answered(session: BoshSession, now: float) -> dict[int, etree._Element]:
    return {rid: etree.fromstring(data) for rid, data in session.flush(now)}


def started(now: float = 0.0, **kw: object) -> BoshSession:
    s = create(now, **kw)  # type: ignore[arg-type]
    s.push(b"<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>")
    got = answered(s, now)
    assert list(got) == [RID]
    return s


MSG = "<message xmlns='jabber:client' to='a@localhost'><body>{}</body></message>"


# ------------------------------------------------------------------ creation
def test_creation_response_attributes_and_features() -> None:
    s = create(ack="1", wait="90", hold="3", content="text/html; charset=utf-8")
    s.set_authid("stream-id")
    s.push(b"<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>")
    [(rid, raw)] = s.flush(0.0)
    el = etree.fromstring(raw)
    assert rid == RID
    assert el.get("sid") == SID
    assert el.get("wait") == "60"  # clamped to max_wait
    assert el.get("hold") == "1" and el.get("requests") == "2"  # clamped to max_hold
    assert el.get("inactivity") == "60" and el.get("polling") == "2"
    assert el.get("maxpause") == "120" and el.get("ver") == "1.6"
    assert el.get("from") == "localhost" and el.get("authid") == "stream-id"
    assert el.get("{urn:xmpp:xbosh}version") == "1.0"
    assert el.get("ack") == str(RID)
    assert len(el) == 1 and etree.QName(el[0]).localname == "features"
    assert s.content == "text/xml; charset=utf-8"  # the client's content= is not echoed
    assert s.stream_attrs == {"to": "localhost", "version": "1.0"}


def test_hold_larger_limit_and_requests() -> None:
    s = create(limits=BoshConfig(max_hold=4), hold="2")
    assert (s.hold, s.requests) == (2, 3)


@pytest.mark.parametrize(
    ("attrs", "condition"),
    [
        ({"to": ""}, "improper-addressing"),
        ({"to": "elsewhere.example"}, "host-unknown"),
        ({"wait": "soon"}, "bad-request"),
        ({"hold": "-1"}, "bad-request"),
    ],
)
def test_creation_errors(attrs: dict[str, str], condition: str) -> None:
    with pytest.raises(CreationError) as info:
        create(**attrs)
    assert info.value.condition == condition


# ---------------------------------------------------------------- rid window
def test_payloads_come_out_once_in_order() -> None:
    s = started()
    assert s.receive(body(RID + 1, MSG.format("one")), 1.0) == Hold(RID + 1)
    ready = s.take_ready()
    assert [r.rid for r in ready] == [RID + 1]
    assert ready[0].payloads[0].findtext("{jabber:client}body") == "one"
    assert s.take_ready() == []


def test_repeated_rid_replays_cached_response_and_is_not_processed_again() -> None:
    s = started()
    s.receive(body(RID + 1, MSG.format("once")), 1.0)
    assert len(s.take_ready()) == 1
    s.push(b"<message xmlns='jabber:client'><body>reply</body></message>")
    [(rid, original)] = s.flush(1.0)
    assert rid == RID + 1
    again = s.receive(body(RID + 1, MSG.format("once")), 2.0)
    assert isinstance(again, Respond) and again.body == original and again.status == 200
    assert s.take_ready() == []  # the message is NOT processed a second time
    assert not s.ended


def test_repeat_of_a_request_still_waiting_joins_it() -> None:
    s = started()
    s.receive(body(RID + 1, MSG.format("x")), 1.0)
    assert len(s.take_ready()) == 1
    assert s.receive(body(RID + 1, MSG.format("x")), 1.5) == Hold(RID + 1)
    assert s.take_ready() == []


def test_gap_waits_for_missing_rid_then_processes_in_order() -> None:
    s = started()
    s.receive(body(RID + 2, MSG.format("second")), 1.0)
    assert s.take_ready() == []  # rid RID+1 is missing
    assert s.flush(100.0) == []  # and nothing may be answered before it
    s.receive(body(RID + 1, MSG.format("first")), 1.1)
    ready = s.take_ready()
    assert [r.payloads[0].findtext("{jabber:client}body") for r in ready] == ["first", "second"]
    got = s.flush(1.2)
    assert [rid for rid, _ in got] == [RID + 1]  # hold=1: the older one goes, in rid order


def test_rid_just_past_window_with_requests_open_is_policy_violation() -> None:
    s = started()
    s.receive(body(RID + 1), 1.0)  # held: no gap, nothing lost
    s.take_ready()
    out = s.receive(body(RID + 4), 1.0)  # RID+2 and RID+3 would be open too: 3 > requests(2)
    assert isinstance(out, Respond)
    assert etree.fromstring(out.body).get("condition") == "policy-violation"


def test_client_moving_past_a_gap_means_the_missing_request_was_lost() -> None:
    """A reload aborted RID+1 before the browser sent it; the restored page goes on with
    RID+2 and RID+3. A client still holding RID+1 could not send RID+3 (3 > requests)."""
    s = started()
    assert s.receive(body(RID + 2, MSG.format("restored")), 1.0) == Hold(RID + 2)
    assert s.take_ready() == []  # a gap: RID+1 may still come
    assert s.receive(body(RID + 3, MSG.format("join")), 1.1) == Hold(RID + 3)
    ready = s.take_ready()
    assert [r.payloads[0].findtext("{jabber:client}body") for r in ready] == ["restored", "join"]
    assert s.lost_rids == 1 and not s.ended
    assert list(answered(s, 1.1)) == [RID + 2]  # hold=1: the older one goes
    # the lost request turning up after all is outside the window
    out = s.receive(body(RID + 1, MSG.format("late")), 1.2)
    assert isinstance(out, Respond)
    assert etree.fromstring(out.body).get("condition") == "item-not-found"


def test_gap_open_for_gap_grace_is_given_up() -> None:
    s = started(limits=BoshConfig(gap_grace=4.0))
    s.receive(body(RID + 2, MSG.format("after the lost one")), 10.0)
    assert s.skip_stale_gap(13.9) == 0 and s.take_ready() == []
    assert s.flush(13.9) == []
    assert s.skip_stale_gap(14.0) == 1
    assert s.has_ready
    [request] = s.take_ready()
    assert request.rid == RID + 2
    s.push(b"<message xmlns='jabber:client'/>")
    assert list(answered(s, 14.0)) == [RID + 2]
    assert s.skip_stale_gap(100.0) == 0  # nothing open any more


def test_lost_request_keeps_the_key_sequence() -> None:
    k1 = "seed-key"
    k2 = hashlib.sha1(k1.encode(), usedforsecurity=False).hexdigest()
    k3 = hashlib.sha1(k2.encode(), usedforsecurity=False).hexdigest()
    s = started(newkey=hashlib.sha1(k3.encode(), usedforsecurity=False).hexdigest())
    s.receive(body(RID + 2, key=k2), 1.0)  # RID+1 (key k3) was lost
    assert s.skip_stale_gap(10.0) == 1
    assert len(s.take_ready()) == 1 and not s.ended
    s.flush(10.0)
    s.receive(body(RID + 3, key=k1), 11.0)
    assert len(s.take_ready()) == 1 and not s.ended


def test_rid_far_beyond_window_terminates_item_not_found() -> None:
    s = started()
    out = s.receive(body(RID + 3), 1.0)  # window is processed+1 .. processed+requests(2)
    assert isinstance(out, Respond)
    assert etree.fromstring(out.body).get("condition") == "item-not-found"
    assert s.ended and s.end_condition == "item-not-found"
    s2 = started()
    s2.receive(body(RID + 1), 1.0)
    out = s2.receive(body(RID + 1000), 1.0)
    assert isinstance(out, Respond)
    assert etree.fromstring(out.body).get("condition") == "item-not-found"


def test_old_rid_not_in_cache_terminates_item_not_found() -> None:
    s = started()
    for i in range(1, 5):
        s.receive(body(RID + i), float(i))
        s.take_ready()
        s.flush(float(i) + 100)
    out = s.receive(body(RID + 1), 10.0)  # long gone from the cache (size = requests)
    assert isinstance(out, Respond)
    assert etree.fromstring(out.body).get("condition") == "item-not-found"


def test_legacy_client_gets_http_status() -> None:
    params = {"to": "localhost", "wait": "60", "hold": "1"}
    s = BoshSession(SID, body(RID, sid=None, **params), "localhost", BoshConfig(), 0.0)
    s.flush(0.0)
    out = s.receive(body(RID + 9), 1.0)
    assert isinstance(out, Respond) and out.status == 404
    assert s.ver is None


# --------------------------------------------------------- hold, wait, requests
def test_new_request_releases_oldest_held_with_empty_body() -> None:
    s = started()
    s.receive(body(RID + 1), 1.0)
    s.take_ready()
    assert s.flush(1.0) == []  # held (hold=1)
    s.receive(body(RID + 2), 2.0)
    s.take_ready()
    got = answered(s, 2.0)
    assert list(got) == [RID + 1] and len(got[RID + 1]) == 0


def test_buffered_payload_answers_the_held_request() -> None:
    s = started()
    s.receive(body(RID + 1), 1.0)
    s.take_ready()
    assert s.push(b"<message xmlns='jabber:client'/>")
    got = answered(s, 1.5)
    assert len(got[RID + 1]) == 1


def test_wait_timeout_gives_empty_response() -> None:
    s = started()
    s.receive(body(RID + 1), 1.0)
    s.take_ready()
    assert s.deadline(RID + 1) == 61.0
    assert s.flush(60.9) == []
    got = answered(s, 61.0)
    assert list(got) == [RID + 1] and len(got[RID + 1]) == 0 and got[RID + 1].get("type") is None


def test_more_requests_than_allowed_is_policy_violation() -> None:
    s = started()
    s.receive(body(RID + 2), 1.0)  # gap: RID+1 held back, so nothing can be answered
    s.receive(body(RID + 1), 1.0)
    s.take_ready()
    # nothing answered yet (the shell would flush; here the client races ahead)
    out = s.receive(body(RID + 3), 1.0)
    assert isinstance(out, Respond)
    assert etree.fromstring(out.body).get("condition") == "policy-violation"
    assert s.ended


def test_one_extra_request_allowed_for_terminate() -> None:
    s = started()
    s.receive(body(RID + 1), 1.0)
    s.receive(body(RID + 2), 1.0)
    assert s.receive(body(RID + 3, type="terminate"), 1.0) == Hold(RID + 3)


def test_polling_session_too_frequent_is_policy_violation() -> None:
    s = started(hold="0")
    assert s.polling_session and s.inactivity == 62
    s.receive(body(RID + 1), 10.0)
    s.take_ready()
    assert [rid for rid, _ in s.flush(10.0)] == [RID + 1]  # hold=0: answered at once
    out = s.receive(body(RID + 2), 11.0)  # 1 s later, polling=2
    assert isinstance(out, Respond)
    assert etree.fromstring(out.body).get("condition") == "policy-violation"


def test_polling_session_at_the_allowed_rate_is_fine() -> None:
    s = started(hold="0")
    s.receive(body(RID + 1), 10.0)
    s.flush(10.0)
    assert s.receive(body(RID + 2), 12.5) == Hold(RID + 2)


# ------------------------------------------------------------ inactivity, pause
def test_inactivity_expires_only_with_nothing_held() -> None:
    s = started()
    s.receive(body(RID + 1), 1.0)
    s.take_ready()
    assert not s.expired(50.0)  # a request is held: the client is there
    s.flush(61.0)  # wait timeout
    assert not s.expired(120.0)
    assert s.expired(121.5)


def test_pause_answers_everything_without_payloads_and_extends_inactivity() -> None:
    s = started()
    s.receive(body(RID + 1), 1.0)
    s.take_ready()
    s.receive(body(RID + 2, pause="100"), 2.0)
    s.push(b"<message xmlns='jabber:client'/>")
    s.take_ready()
    got = answered(s, 2.0)
    assert list(got) == [RID + 1, RID + 2]
    assert len(got[RID + 1]) == 1 and len(got[RID + 2]) == 0  # pause response: no payload
    assert not s.expired(90.0) and s.expired(102.5)
    s.receive(body(RID + 3), 50.0)  # the next request restores normal inactivity
    s.take_ready()
    s.flush(110.0)
    assert s.expired(171.0)


def test_pause_above_maxpause_is_an_ordinary_request() -> None:
    s = started()
    s.receive(body(RID + 1, pause="9999"), 1.0)
    s.take_ready()
    assert s.flush(1.0) == [] and s.pause is None


def test_gap_never_filled_expires() -> None:
    s = started()
    s.receive(body(RID + 2), 1.0)
    assert not s.expired(100.0)
    assert s.expired(122.0)


# --------------------------------------------------------------------- acks
def test_response_acks() -> None:
    s = started(ack="1")
    s.receive(body(RID + 1), 1.0)
    s.take_ready()
    s.receive(body(RID + 2), 1.1)
    s.take_ready()
    got = answered(s, 1.1)
    assert got[RID + 1].get("ack") == str(RID + 2)  # it had RID+2 too: acknowledges it
    got = answered(s, 100.0)
    assert got[RID + 2].get("ack") is None  # equal to the rid answered: left out


def test_lagging_client_ack_gets_report_and_time() -> None:
    s = started(ack="1")
    s.receive(body(RID + 1), 1.0)
    s.take_ready()
    s.flush(61.0)  # answered at 61
    s.receive(body(RID + 2, ack=str(RID)), 65.0)  # client has not seen RID+1's response
    s.take_ready()
    got = answered(s, 65.0)
    assert got[RID + 2].get("report") == str(RID + 1)
    assert got[RID + 2].get("time") == "4000"


# ---------------------------------------------------------------- keys, end
def test_key_sequence() -> None:
    k1 = "seed-key"
    k2 = hashlib.sha1(k1.encode(), usedforsecurity=False).hexdigest()
    s = started(newkey=hashlib.sha1(k2.encode(), usedforsecurity=False).hexdigest())
    s.receive(body(RID + 1, key=k2), 1.0)
    assert len(s.take_ready()) == 1
    s.flush(1.0)
    outcome = s.receive(body(RID + 2, key="forged"), 2.0)
    assert s.take_ready() == []
    assert s.ended and s.end_condition == "item-not-found"
    # the request that ended the session is answered at once, not left to a flush
    assert isinstance(outcome, Respond) and outcome.condition == "item-not-found"
    assert etree.fromstring(outcome.body).get("type") == "terminate"
    got = answered(s, 2.0)  # the one still held (hold=1) gets the terminate body
    assert list(got) == [RID + 1] and got[RID + 1].get("condition") == "item-not-found"


def test_missing_key_answers_its_request_and_every_held_one() -> None:
    k1 = "seed-key"
    k2 = hashlib.sha1(k1.encode(), usedforsecurity=False).hexdigest()
    s = started(newkey=hashlib.sha1(k2.encode(), usedforsecurity=False).hexdigest())
    assert s.receive(body(RID + 2, key=k1), 1.0) == Hold(RID + 2)  # a gap: waits for RID+1
    outcome = s.receive(body(RID + 1), 2.0)  # no key at all
    assert isinstance(outcome, Respond) and outcome.condition == "item-not-found"
    assert s.take_ready() == []
    got = answered(s, 2.0)
    assert list(got) == [RID + 2] and got[RID + 2].get("condition") == "item-not-found"
    assert s.finished and s.waiting == 0


def test_wrong_key_of_a_legacy_client_is_an_http_status_at_once() -> None:
    k2 = hashlib.sha1(b"seed-key", usedforsecurity=False).hexdigest()
    s = started(ver="", newkey=hashlib.sha1(k2.encode(), usedforsecurity=False).hexdigest())
    assert s.legacy
    outcome = s.receive(body(RID + 1, key="bad"), 1.0)
    assert isinstance(outcome, Respond) and outcome.status == 404


@pytest.mark.parametrize("newkey", ["clé", "ab"])
def test_non_ascii_key_or_newkey_is_a_wrong_key(newkey: str) -> None:
    # found by fuzz/targets/bosh.py: hmac.compare_digest raised TypeError on non-ASCII str
    s = started(newkey=newkey)
    outcome = s.receive(body(RID + 1, key="é"), 1.0)
    assert isinstance(outcome, Respond) and outcome.condition == "item-not-found"
    assert s.take_ready() == []


def test_terminate_processes_payloads_then_answers_terminate() -> None:
    s = started()
    s.receive(body(RID + 1), 1.0)
    s.take_ready()
    s.receive(
        body(RID + 2, "<presence xmlns='jabber:client' type='unavailable'/>", type="terminate"), 2.0
    )
    ready = s.take_ready()
    assert ready[-1].terminate and len(ready[-1].payloads) == 1
    s.end(None)
    got = answered(s, 2.0)
    assert [el.get("type") for el in got.values()] == ["terminate", "terminate"]
    assert all(el.get("condition") is None for el in got.values())
    assert s.finished


def test_server_side_stream_error_is_remote_stream_error_with_payload() -> None:
    s = started()
    s.receive(body(RID + 1), 1.0)
    s.take_ready()
    s.push(
        b"<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict/></stream:error>"
    )
    s.end("remote-stream-error")
    got = answered(s, 1.0)
    el = got[RID + 1]
    assert el.get("type") == "terminate" and el.get("condition") == "remote-stream-error"
    assert etree.QName(el[0]).localname == "error"
    later = s.receive(body(RID + 2), 2.0)
    assert isinstance(later, Respond)


def test_stream_error_while_no_request_waits_goes_out_with_the_next_one() -> None:
    # The server ends the session between two requests (a forum ban found by the
    # re-check): the client must still learn why, from its next request.
    s = started()
    s.push(
        b"<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"
        b"<policy-violation/></stream:error>"
    )
    s.end("remote-stream-error")
    assert answered(s, 1.0) == {}
    first = s.receive(body(RID + 1), 2.0)
    assert isinstance(first, Respond)
    el = etree.fromstring(first.body)
    assert el.get("type") == "terminate" and el.get("condition") == "remote-stream-error"
    assert [etree.QName(child).localname for child in el] == ["error"]
    assert s.finished
    again = s.receive(body(RID + 2), 3.0)  # a restore attempt with the same sid
    assert isinstance(again, Respond) and etree.fromstring(again.body).get("type") == "terminate"


def test_buffer_limit() -> None:
    s = started(limits=BoshConfig(max_buffer_bytes=100))
    assert s.push(b"x" * 60)
    assert not s.push(b"y" * 60)


# ------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "raw",
    [
        b"<body rid='1' xmlns='urn:not-httpbind'/>",
        b"<bodyx rid='1' xmlns='http://jabber.org/protocol/httpbind'/>",
    ],
)
def test_wrong_root_is_bad_request(raw: bytes) -> None:
    parsed = parse_body(raw)
    assert isinstance(parsed, BadBody) and parsed.wrong_root


def test_malformed_payload_keeps_sid_and_rid() -> None:
    parsed = parse_body(
        f"<body xmlns='{NS}' rid='7' sid='abc'><message><body>x</message></body>".encode()
    )
    assert isinstance(parsed, BadBody) and (parsed.sid, parsed.rid) == ("abc", 7)


@pytest.mark.parametrize(
    "raw",
    [
        f"<body xmlns='{NS}'/>".encode(),  # no rid
        f"<body xmlns='{NS}' rid='0'/>".encode(),
        f"<body xmlns='{NS}' rid='9007199254740992'/>".encode(),
        f"<body xmlns='{NS}' rid='1'>text</body>".encode(),
        f"<body xmlns='{NS}' rid='1'><!-- no --></body>".encode(),
        f"<!DOCTYPE body><body xmlns='{NS}' rid='1'/>".encode(),
        f"<body xmlns='{NS}' rid='1'><a>&ent;</a></body>".encode(),
        f"<body xmlns='{NS}' rid='1'><?pi x?></body>".encode(),
        b"",
    ],
)
def test_bad_bodies(raw: bytes) -> None:
    assert isinstance(parse_body(raw), BadBody)


def test_payload_size_limit() -> None:
    big = "x" * 5000
    msg = f"<message xmlns='jabber:client'><body>{big}</body></message>"
    raw = f"<body xmlns='{NS}' rid='1'>{msg}</body>"
    assert isinstance(parse_body(raw.encode(), max_payload_size=1000), BadBody)
    assert isinstance(parse_body(raw.encode(), max_payload_size=10_000), BodyRequest)


def test_render() -> None:
    assert render_body([]) == f"<body xmlns='{NS}'/>".encode()
    assert etree.fromstring(terminate_body("bad-request")).get("condition") == "bad-request"
    el = etree.fromstring(render_body([("xml:lang", "en"), ("x", "a'<")], [b"<a/>"]))
    assert el.get("{http://www.w3.org/XML/1998/namespace}lang") == "en" and el.get("x") == "a'<"
