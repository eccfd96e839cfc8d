"""XEP-0198 stream management: the sans-IO core (bytes only) and the stream's handling."""

from __future__ import annotations

import pytest
from lxml import etree

from tests.unit.stream_helpers import CLIENT, STREAMS, Driver
from xmppd.jid import JID
from xmppd.stream import sm as smp
from xmppd.stream.c2s import ResumeRequest, SMEnabled, StreamEnded
from xmppd.stream.sm import MOD, HandledCountTooHigh, ResumeRegistry, StreamManagement
from xmppd.xml import ns
from xmppd.xml.parser import StreamClose

SM = "{urn:xmpp:sm:3}"
STANZAS = "{%s}" % ns.STANZA_ERRORS


# ------------------------------------------------------------------ the core
def test_record_keeps_the_very_bytes_and_ack_releases_in_order() -> None:
    sm = StreamManagement("juliet@example.com", request_every=100)
    shared = [b"<message>%d</message>" % i for i in range(4)]
    for data in shared:
        assert sm.record(data) is False
    assert len(sm) == 4 and sm.sent == 4
    # the same objects: fan-out bytes are shared, never copied per recipient
    assert all(a is b for a, b in zip(sm.unacked(), shared, strict=True))
    assert sm.ack(3) == 3
    assert sm.unacked() == [shared[3]]
    assert sm.ack(3) == 0  # a repeated h is fine
    assert sm.ack(4) == 1 and len(sm) == 0 and sm.acked == 4


def test_h_too_high_is_refused_and_changes_nothing() -> None:
    sm = StreamManagement("j@e", request_every=100)
    sm.record(b"<message/>")
    sm.record(b"<message/>")
    with pytest.raises(HandledCountTooHigh) as info:
        sm.ack(3)
    assert (info.value.h, info.value.send_count) == (3, 2)
    app = info.value.app_condition()
    assert app.tag == SM + "handled-count-too-high"
    assert (app.get("h"), app.get("send-count")) == ("3", "2")
    assert len(sm) == 2 and sm.acked == 0


def test_counters_wrap_at_two_to_the_32() -> None:
    sm = StreamManagement("j@e", request_every=100)
    sm._sent = sm._acked = MOD - 2  # as after 4 billion stanzas
    for i in range(4):
        sm.record(b"<m%d/>" % i)
    assert sm.sent == 2
    assert sm.ack(0) == 2  # h wrapped too: 2**32 - 2 + 2
    assert sm.ack(2) == 2 and len(sm) == 0
    sm.inbound = MOD - 1
    sm.handled()
    assert sm.inbound == 0
    assert sm.answer() == b'<a xmlns="urn:xmpp:sm:3" h="0"/>'
    with pytest.raises(HandledCountTooHigh):
        sm.ack(3)


def test_request_every_n_stanzas_and_on_idle() -> None:
    sm = StreamManagement("j@e", request_every=3)
    assert [sm.record(b"<m/>") for _ in range(7)] == [False, False, True] * 2 + [False]
    assert sm.request_pending()
    sm.requested()
    assert not sm.request_pending()


def test_full_queue_flags_then_refuses_instead_of_growing() -> None:
    sm = StreamManagement("j@e", request_every=100, max_unacked=2)
    assert sm.record(b"<a/>") is False
    assert not sm.over_limit
    assert sm.record(b"<b/>") is False
    assert sm.over_limit  # the session should end now...
    assert sm.record(b"<c/>") is False  # ...but what races that end is still kept
    assert sm.record(b"<d/>") is False
    assert sm.record(b"<e/>") is None  # hard cap: twice the limit
    assert sm.unacked() == [b"<a/>", b"<b/>", b"<c/>", b"<d/>"] and sm.sent == 4


def test_idle_state_is_small_and_take_unacked_empties() -> None:
    sm = StreamManagement("j@e")
    assert not hasattr(sm, "__dict__")
    assert sm._unacked is None  # no deque until something is sent
    sm.record(b"<m/>")
    sm.ack(1)
    assert sm._unacked is None  # dropped again once everything is acknowledged
    sm.record(b"<x/>")
    assert sm.take_unacked() == [b"<x/>"] and len(sm) == 0


def test_acked_through_room_and_the_ack_hook() -> None:
    """What offline delivery waits on: its last stanza acknowledged, room under the cap."""
    sm = StreamManagement("j@e", request_every=100, max_unacked=5)
    calls: list[int] = []
    sm.on_ack = lambda: calls.append(sm.acked)
    sm.record(b"<before/>")
    mark_before = sm.sent
    sm.record(b"<page1/>")
    sm.record(b"<page2/>")
    mark = sm.sent
    sm.record(b"<after/>")
    assert sm.room() == 0  # one more would reach max_unacked
    assert not sm.acked_through(mark) and not sm.acked_through(mark_before)
    sm.ack(1)
    assert sm.acked_through(mark_before) and not sm.acked_through(mark)
    sm.ack(3)
    assert sm.acked_through(mark) and sm.room() == 3
    assert calls == [1, 3]
    sm._sent = sm._acked = MOD - 1  # the marks wrap with the counters
    sm.take_unacked()
    sm.record(b"<w/>")
    wrapped = sm.sent
    assert wrapped == 0 and not sm.acked_through(wrapped)
    sm.ack(0)
    assert sm.acked_through(wrapped)


def test_parse_h_and_resume_timeout() -> None:
    assert smp.parse_h("0") == 0 and smp.parse_h(str(MOD - 1)) == MOD - 1
    for bad in (None, "", "-1", "1.5", "x", str(MOD), "99999999999"):
        assert smp.parse_h(bad) is None
    assert smp.resume_timeout(None, 300) == 300
    assert smp.resume_timeout("60", 300) == 60
    assert smp.resume_timeout("100000", 300) == 300
    assert smp.resume_timeout("0", 300) == 1
    assert smp.resume_timeout("soon", 300) == 300


def test_tokens_are_unguessable() -> None:
    tokens = {smp.new_token() for _ in range(200)}
    assert len(tokens) == 200
    assert all(len(t) >= 32 for t in tokens)


def test_registry_binds_tokens_to_their_owner() -> None:
    reg: ResumeRegistry[str] = ResumeRegistry()
    token = smp.new_token()
    reg.add(token, "juliet@example.com", "session-1")
    assert reg.lookup(token, "juliet@example.com") == "session-1"
    assert reg.lookup(token, "romeo@example.com") is None  # another user's token
    assert reg.lookup(token[:-1] + ("A" if token[-1] != "A" else "B"), "juliet@example.com") is None
    assert reg.lookup("nope", "juliet@example.com") is None
    assert token in reg and len(reg) == 1


def test_registry_expiry_deadlines_attach_and_ended_h() -> None:
    reg: ResumeRegistry[str] = ResumeRegistry(ended_keep=1)
    a, b = smp.new_token(), smp.new_token()
    reg.add(a, "j@e", "A")
    reg.add(b, "j@e", "B")
    assert reg.next_deadline() is None
    reg.detach(a, now=100.0, timeout=30)
    reg.detach(b, now=110.0, timeout=5)
    assert reg.next_deadline() == 115.0
    assert reg.is_detached(a) and sorted(reg.detached()) == ["A", "B"]
    reg.attach(b)  # resumed in time: its deadline no longer counts
    assert not reg.is_detached(b)
    assert reg.next_deadline() == 130.0
    assert list(reg.expired(129.9)) == []
    assert list(reg.expired(130.0)) == ["A"]
    assert list(reg.expired(500.0)) == []  # handed out once
    reg.remove(a, final_h=7)
    assert reg.lookup(a, "j@e") is None
    assert reg.ended_h(a, "j@e") == 7
    assert reg.ended_h(a, "r@e") is None
    reg.remove(b, final_h=1)  # ended_keep=1: the older record is forgotten
    assert reg.ended_h(a, "j@e") is None and reg.ended_h(b, "j@e") == 1
    reg.add(a, "j@e", "A")
    reg.expire_now(a, now=600.0)
    assert reg.next_deadline() == 600.0


# ---------------------------------------------------------------- the stream
def sm_driver(**kw) -> Driver:
    kw.setdefault("sm_enabled", True)
    kw.setdefault("tls_required", False)
    return Driver(**kw)


def enabled(d: Driver, resume: bool = True, max_: str | None = None) -> StreamManagement:
    d.bind()
    attrs = " resume='true'" if resume else ""
    if max_ is not None:
        attrs += f" max='{max_}'"
    events = d.send(f"<enable xmlns='urn:xmpp:sm:3'{attrs}/>".encode())
    (el,) = d.take_elements()
    assert el.tag == SM + "enabled", etree.tostring(el)
    (ev,) = [e for e in events if isinstance(e, SMEnabled)]
    return ev.sm


def sm_stream_error(items: list) -> etree._Element | None:
    for n, item in enumerate(items):
        if isinstance(item, etree._Element) and item.tag == STREAMS + "error":
            assert isinstance(items[n + 1], StreamClose), items
            return item
    return None


def test_sm_feature_only_after_authentication() -> None:
    d = sm_driver()
    features = d.open()
    assert features.find(SM + "sm") is None
    d.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
           b"AGp1bGlldAByMG1lbyAmIGJhbGNvbnk=</auth>")  # fmt: skip
    d.take()
    features = d.open()
    assert features.find(SM + "sm") is not None
    assert features.find("{%s}bind" % ns.BIND) is not None


def test_sm_disabled_is_not_offered_and_enable_fails() -> None:
    d = Driver(tls_required=False)
    d.bind()
    assert b"urn:xmpp:sm:3" not in d.raw
    d.send(b"<enable xmlns='urn:xmpp:sm:3'/>")
    (el,) = d.take_elements()
    assert el.tag == SM + "failed" and el.find(STANZAS + "feature-not-implemented") is not None


def test_enable_with_resume_gives_id_and_max() -> None:
    d = sm_driver(sm_resume_timeout=120)
    d.bind()
    events = d.send(b"<enable xmlns='urn:xmpp:sm:3' resume='true' max='60'/>")
    (el,) = d.take_elements()
    assert el.get("resume") == "true" and el.get("max") == "60"
    token = el.get("id")
    assert token and len(token) >= 32
    (ev,) = [e for e in events if isinstance(e, SMEnabled)]
    assert ev.sm.token == token and ev.sm.owner == "juliet@example.com" and ev.sm.max == 60
    assert d.stream.sm is ev.sm


def test_enable_without_resume_has_no_id() -> None:
    d = sm_driver()
    sm = enabled(d, resume=False)
    assert sm.token is None and not sm.resumable
    assert b'id="' not in d.raw.split(b"enabled")[-1]


def test_enable_before_bind_and_twice_fail_with_unexpected_request() -> None:
    d = sm_driver()
    d.login()
    d.send(b"<enable xmlns='urn:xmpp:sm:3'/>")
    (el,) = d.take_elements()
    assert el.tag == SM + "failed" and el.find(STANZAS + "unexpected-request") is not None
    d = sm_driver()
    enabled(d)
    events = d.send(b"<enable xmlns='urn:xmpp:sm:3'/>")
    (el,) = d.take_elements()
    assert el.tag == SM + "failed" and el.find(STANZAS + "unexpected-request") is not None
    assert not [e for e in events if isinstance(e, SMEnabled)]


def test_r_is_answered_with_the_stanzas_handled_including_stream_answered_ones() -> None:
    d = sm_driver()
    enabled(d)
    d.send(b"<r xmlns='urn:xmpp:sm:3'/>")
    assert [e.get("h") for e in d.take_elements()] == ["0"]
    d.send(
        b"<message to='romeo@example.com'><body>1</body></message>"
        b"<iq type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
        b"<iq type='get'/>"  # no id: bounced by the stream, still handled
        b"<presence/><r xmlns='urn:xmpp:sm:3'/>"
    )
    answers = [e for e in d.take_elements() if e.tag == SM + "a"]
    assert [a.get("h") for a in answers] == ["4"]


def test_stream_made_stanzas_are_recorded_as_unacked() -> None:
    d = sm_driver(sm_request_every=2)
    sm = enabled(d)
    d.send(b"<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
    d.send(b"<iq type='set' id='s2'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
    items = d.take_elements()
    assert [i.tag for i in items] == [CLIENT + "iq", CLIENT + "iq", SM + "r"]
    assert len(sm) == 2
    d.send(b"<a xmlns='urn:xmpp:sm:3' h='2'/>")
    assert len(sm) == 0 and d.take_elements() == []


def test_ack_too_high_is_a_stream_error_with_the_counts() -> None:
    d = sm_driver()
    sm = enabled(d)
    sm.record(b"<message/>")
    events = d.send(b"<a xmlns='urn:xmpp:sm:3' h='5'/>")
    err = sm_stream_error(d.take())
    assert err is not None
    assert err.find("{%s}undefined-condition" % ns.STREAM_ERRORS) is not None
    app = err.find(SM + "handled-count-too-high")
    assert app is not None and (app.get("h"), app.get("send-count")) == ("5", "1")
    assert any(isinstance(e, StreamEnded) and e.error for e in events)


def test_bad_h_and_r_without_sm_are_stream_errors() -> None:
    d = sm_driver()
    enabled(d)
    d.send(b"<a xmlns='urn:xmpp:sm:3' h='-1'/>")
    err = sm_stream_error(d.take())
    assert err is not None and err.find("{%s}invalid-xml" % ns.STREAM_ERRORS) is not None
    d = sm_driver()
    d.bind()
    d.send(b"<r xmlns='urn:xmpp:sm:3'/>")
    err = sm_stream_error(d.take())
    assert err is not None
    assert err.find("{%s}unsupported-stanza-type" % ns.STREAM_ERRORS) is not None


def test_resume_asks_the_shell_and_resumed_answers_with_inbound_h() -> None:
    d = sm_driver()
    d.login()
    events = d.send(b"<resume xmlns='urn:xmpp:sm:3' previd='tok' h='3'/>")
    assert ResumeRequest("tok", 3) in events
    old = StreamManagement("juliet@example.com", token="tok")
    old.inbound = 9
    d.stream.resumed(JID.parse("juliet@example.com/balcony"), old)
    d._pump()
    (el,) = d.take_elements()
    assert el.tag == SM + "resumed" and (el.get("previd"), el.get("h")) == ("tok", "9")
    assert d.stream.sm is old and str(d.stream.jid) == "juliet@example.com/balcony"
    d.send(b"<presence/><r xmlns='urn:xmpp:sm:3'/>")
    assert [e.get("h") for e in d.take_elements()] == ["10"]


def test_resume_failed_leaves_binding_open() -> None:
    d = sm_driver()
    d.login()
    d.send(b"<resume xmlns='urn:xmpp:sm:3' previd='tok' h='0'/>")
    d.stream.resume_failed(4, "no such session")
    d._pump()
    (el,) = d.take_elements()
    assert el.tag == SM + "failed" and el.get("h") == "4"
    assert el.find(STANZAS + "item-not-found") is not None
    d.send(f"<iq type='set' id='b'><bind xmlns='{ns.BIND}'/></iq>".encode())
    (res,) = d.take_elements()
    assert res.get("type") == "result"


def test_resume_without_previd_or_h_fails_with_bad_request() -> None:
    d = sm_driver()
    d.login()
    events = d.send(b"<resume xmlns='urn:xmpp:sm:3' h='x' previd='t'/>")
    assert not [e for e in events if isinstance(e, ResumeRequest)]
    (el,) = d.take_elements()
    assert el.tag == SM + "failed" and el.find(STANZAS + "bad-request") is not None


def test_resume_after_bind_is_unexpected() -> None:
    d = sm_driver()
    d.bind()
    d.send(b"<resume xmlns='urn:xmpp:sm:3' previd='t' h='0'/>")
    (el,) = d.take_elements()
    assert el.tag == SM + "failed" and el.find(STANZAS + "unexpected-request") is not None
