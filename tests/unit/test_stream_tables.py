"""The stream machines' transition tables: complete, closed under errors, and the only
place a phase changes; random event sequences never make a machine raise.

One table per stream (xmppd.stream.c2s_states, xmppd.stream.component): every phase and
peer event either has a row or is refused with an RFC 6120 stream error; the shell's
answers are taken or ignored; no entry point lets an exception out.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from lxml import etree

from tests.unit.stream_helpers import Driver
from xmppd.auth.base import AuthError, Identity
from xmppd.auth.scram import derive_scram
from xmppd.jid import JID
from xmppd.stream import c2s_states
from xmppd.stream import sm as smp
from xmppd.stream.c2s import C2SSettings, C2SStream
from xmppd.stream.c2s_states import Event, Phase, classify
from xmppd.stream.component import (
    CLIENT_RULES,
    SERVER_RULES,
    ComponentClientStream,
    ComponentServerStream,
    ComponentSettings,
    handshake_digest,
)
from xmppd.stream.component import Event as CEvent
from xmppd.stream.component import Phase as CPhase
from xmppd.stream.framing import BOSH, FRAMING_NS, STREAM, WEBSOCKET
from xmppd.stream.machine import Rules, StreamEnded
from xmppd.stream.mechanisms import offered_mechanisms
from xmppd.xml import ns
from xmppd.xml.errors import STREAM_CONDITIONS, StanzaError, StreamError

ROOT = Path(__file__).resolve().parents[2]
ALL_RULES: dict[str, Rules[Any, Any]] = {
    "c2s": c2s_states.RULES,
    "component server": SERVER_RULES,
    "component client": CLIENT_RULES,
}


# ---------------------------------------------------------------- the tables
@pytest.mark.parametrize("name", ALL_RULES)
def test_every_phase_and_peer_event_transitions_or_is_a_stream_error(name: str) -> None:
    rules = ALL_RULES[name]
    for phase in rules.reachable():
        if phase in rules.deaf:
            continue  # input is dropped unread there
        assert phase in rules.refusals, f"{phase}: no stream error for what it refuses"
        for event in rules.peer:
            if (phase, event) in rules.transitions:
                continue
            err = rules.refusal(phase, event)
            assert isinstance(err, StreamError) and err.condition in STREAM_CONDITIONS
            assert err.condition != "undefined-condition", (phase, event)


@pytest.mark.parametrize("name", ALL_RULES)
def test_every_open_phase_can_close_and_closed_is_final(name: str) -> None:
    rules = ALL_RULES[name]
    reachable = rules.reachable()
    for phase in reachable - {rules.closed}:
        assert rules.transitions[(phase, rules.error)] is rules.closed
        assert rules.transitions[(phase, rules.end)] is rules.closed
        if phase not in rules.deaf:
            assert rules.transitions[(phase, rules.peer_close)] is rules.closed
    assert rules.closed in rules.deaf
    assert not [row for row in rules.transitions if row[0] is rules.closed]


@pytest.mark.parametrize("name", ALL_RULES)
def test_every_row_is_used_and_every_event_has_a_kind(name: str) -> None:
    rules = ALL_RULES[name]
    reachable = rules.reachable()
    assert all(src in reachable for src, _ in rules.transitions), "a row from nowhere"
    used = {event for _, event in rules.transitions}
    assert rules.answers <= used, rules.answers - used
    assert {rules.error, rules.end, rules.peer_close} <= used
    assert not rules.peer & rules.answers


def test_the_phases_each_stream_reaches() -> None:
    assert c2s_states.RULES.reachable() == set(Phase)
    assert SERVER_RULES.reachable() == set(CPhase)
    assert CLIENT_RULES.reachable() == set(CPhase) - {CPhase.ACCEPTING}


def test_c2s_negotiation_runs_in_order_through_the_table() -> None:
    t = c2s_states.TRANSITIONS
    path = [
        (Phase.EXPECT_HEADER, Event.HEADER, Phase.NEGOTIATING),
        (Phase.NEGOTIATING, Event.STARTTLS, Phase.WAIT_TLS),
        (Phase.WAIT_TLS, Event.TLS_DONE, Phase.EXPECT_HEADER),
        (Phase.NEGOTIATING, Event.AUTH, Phase.SASL),
        (Phase.SASL, Event.CHECK, Phase.SASL_CHECK),
        (Phase.SASL_CHECK, Event.VERDICT, Phase.SASL),
        (Phase.SASL, Event.SUCCESS, Phase.EXPECT_RESTART),
        (Phase.EXPECT_RESTART, Event.HEADER, Phase.BIND),
        (Phase.BIND, Event.BIND, Phase.BINDING),
        (Phase.BINDING, Event.BOUND, Phase.ESTABLISHED),
    ]
    for src, event, dst in path:
        assert t[(src, event)] is dst
    assert (Phase.NEGOTIATING, Event.STANZA) not in t  # authenticate first
    assert c2s_states.RULES.refusal(Phase.NEGOTIATING, Event.STANZA).condition == ("not-authorized")
    assert c2s_states.RULES.refusal(Phase.BIND, Event.AUTH).condition == "not-authorized"


def test_only_the_machine_assigns_a_phase() -> None:
    """Transitions live in the tables: no stream module sets ``phase`` itself."""
    assign = re.compile(r"\.phase\s*=[^=]")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in [*(ROOT / "xmppd").rglob("*.py"), *(ROOT / "bridges").rglob("*.py")]
        if path.name != "machine.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if assign.search(line)
    ]
    assert offenders == []


def test_every_element_a_c2s_phase_accepts_has_a_handler() -> None:
    from xmppd.stream.c2s import _HANDLERS

    accepted = {
        event
        for (_phase, event) in c2s_states.TRANSITIONS
        if event in c2s_states.PEER and event not in (Event.HEADER, Event.CLOSE)
    }
    assert accepted == set(_HANDLERS)


@pytest.mark.parametrize(
    ("xml", "event"),
    [
        (f"<iq xmlns='{ns.CLIENT}' type='set' id='1'><bind xmlns='{ns.BIND}'/></iq>", Event.BIND),
        (f"<iq xmlns='{ns.CLIENT}' type='get' id='1'><bind xmlns='{ns.BIND}'/></iq>", Event.STANZA),
        (f"<iq xmlns='{ns.CLIENT}' type='set'><session xmlns='{ns.SESSION}'/></iq>", Event.SESSION),
        (f"<message xmlns='{ns.CLIENT}'/>", Event.STANZA),
        ("<message xmlns='jabber:server'/>", Event.OTHER),
        (f"<auth xmlns='{ns.SASL}'/>", Event.AUTH),
        (f"<r xmlns='{smp.NS}'/>", Event.SM_REQUEST),
        (f"<enabled xmlns='{smp.NS}'/>", Event.OTHER),
    ],
)
def test_classify(xml: str, event: Event) -> None:
    assert classify(etree.fromstring(xml)) is event


def test_an_outcome_without_a_row_is_internal_server_error_not_an_exception() -> None:
    stream = C2SStream(settings())
    [ended] = stream._answer(Event.SUCCESS, lambda events: None)  # SUCCESS is ours, not an answer
    assert isinstance(ended, StreamEnded) and ended.error is not None
    assert ended.error.condition == "internal-server-error" and stream.closed


def test_a_stale_answer_is_ignored() -> None:
    stream = C2SStream(settings())
    assert stream.password_checked(Identity("juliet")) == []
    stream.bind_result("b1", JID.parse("juliet@example.com/x"))
    stream.tls_established()
    assert stream.phase is Phase.EXPECT_HEADER and stream.data_to_send() == b""


def test_late_answers_leave_an_established_stream_alone() -> None:
    """A limiter refusal or TLS report that arrives after the stream moved on (the
    client aborted, bound, resumed) used to fail SASL or restart a bound stream."""
    d = Driver(tls_required=False)
    d.bind()
    assert d.stream.rate_limited() == []
    d.stream.tls_established()
    d.stream.resume_failed(0, "late")
    assert d.stream.phase is Phase.ESTABLISHED and d.stream.data_to_send() == b""
    [event] = d.send(f"<message xmlns='{ns.CLIENT}' to='romeo@example.com'/>".encode())
    assert type(event).__name__ == "StanzaReceived"


# ---------------------------------------------------------------- random sequences
DOMAIN = "example.com"
SCRAM_KEYS = derive_scram("pencil", "sha256")


def settings(**kw: Any) -> C2SSettings:
    base: dict[str, Any] = {
        "domain": DOMAIN,
        "mechanisms": offered_mechanisms(DOMAIN, scram=True),
        "tls_available": True,
        "tls_required": False,
        "sm_enabled": True,
        "max_stanza_size": 10_000,
    }
    base.update(kw)
    return C2SSettings(**base)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


PLAIN = _b64(b"\0juliet\0pencil")


HEADER = (
    f"<?xml version='1.0'?><stream:stream xmlns='{ns.CLIENT}' "
    f"xmlns:stream='{ns.STREAMS}' to='{DOMAIN}' version='1.0'>"
)
C2S_INPUT = [
    HEADER,
    HEADER.replace(DOMAIN, "elsewhere.example"),
    HEADER.replace(ns.CLIENT, "jabber:server"),
    f"<open xmlns='{FRAMING_NS}' to='{DOMAIN}' version='1.0'/>",
    f"<close xmlns='{FRAMING_NS}'/>",
    f"<starttls xmlns='{ns.TLS}'/>",
    f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>{PLAIN}</auth>",
    f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'/>",
    f"<auth xmlns='{ns.SASL}' mechanism='X-NOPE'/>",
    f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>!!!</auth>",
    f"<auth xmlns='{ns.SASL}' mechanism='SCRAM-SHA-256'>{_b64(b'n,,n=juliet,r=abc')}</auth>",
    f"<response xmlns='{ns.SASL}'>{PLAIN}</response>",
    f"<response xmlns='{ns.SASL}'>{_b64(b'c=biws,r=abc,p=AAAA')}</response>",
    f"<abort xmlns='{ns.SASL}'/>",
    f"<iq xmlns='{ns.CLIENT}' type='set' id='b'><bind xmlns='{ns.BIND}'><resource>r</resource>"
    "</bind></iq>",
    f"<iq xmlns='{ns.CLIENT}' type='set'><bind xmlns='{ns.BIND}'/></iq>",
    f"<iq xmlns='{ns.CLIENT}' type='set' id='b'><bind xmlns='{ns.BIND}'><resource>\u0007"
    "</resource></bind></iq>",
    f"<iq xmlns='{ns.CLIENT}' type='set' id='s'><session xmlns='{ns.SESSION}'/></iq>",
    f"<message xmlns='{ns.CLIENT}' to='romeo@{DOMAIN}'><body>hi</body></message>",
    f"<iq xmlns='{ns.CLIENT}' type='get'/>",
    f"<enable xmlns='{smp.NS}' resume='true'/>",
    f"<resume xmlns='{smp.NS}' previd='x' h='0'/>",
    f"<resume xmlns='{smp.NS}'/>",
    f"<r xmlns='{smp.NS}'/>",
    f"<a xmlns='{smp.NS}' h='0'/>",
    f"<a xmlns='{smp.NS}' h='99'/>",
    f"<a xmlns='{smp.NS}' h='x'/>",
    "<bogus xmlns='urn:example'/>",
    "</stream:stream>",
    "<<not xml",
    "",
]

C2S_CALLS: dict[str, Callable[[C2SStream], Any]] = {
    "tls": lambda s: s.tls_established(),
    "password ok": lambda s: s.password_checked(Identity("juliet")),
    "password wrong": lambda s: s.password_checked(AuthError("not-authorized")),
    "scram keys": lambda s: s.scram_credentials((Identity("juliet"), SCRAM_KEYS)),
    "scram unknown": lambda s: s.scram_credentials(None),
    "rate limited": lambda s: s.rate_limited(),
    "bound": lambda s: s.bind_result("b", JID.parse(f"juliet@{DOMAIN}/r")),
    "bind conflict": lambda s: s.bind_result("b", StanzaError("conflict")),
    "resumed": lambda s: s.resumed(
        JID.parse(f"juliet@{DOMAIN}/r"), smp.StreamManagement(f"juliet@{DOMAIN}")
    ),
    "resume failed": lambda s: s.resume_failed(3, "gone"),
    "close": lambda s: s.close(),
    "close with error": lambda s: s.close("system-shutdown"),
    "bosh open": lambda s: s.open_stream({"to": DOMAIN, "version": "1.0"}),
    "bosh element": lambda s: s.receive_element(
        etree.fromstring(f"<message xmlns='{ns.CLIENT}'><body>x</body></message>")
    ),
    "frames": lambda s: s.frames_to_send(),
    "hibernate": lambda s: s.hibernate(),
}


def _parses(text: str) -> bool:
    try:
        etree.fromstring(text)
    except etree.XMLSyntaxError:
        return False
    return True


#: What a transport that parses elements itself (BOSH) hands over.
C2S_ELEMENTS = [text for text in C2S_INPUT if _parses(text)]

c2s_actions = st.one_of(
    st.tuples(st.just("data"), st.sampled_from(C2S_INPUT), st.integers(1, 3)),
    st.tuples(st.just("element"), st.sampled_from(C2S_ELEMENTS), st.just(1)),
    st.tuples(st.just("call"), st.sampled_from(sorted(C2S_CALLS)), st.just(0)),
)

OPEN = {"stream": HEADER, "websocket": f"<open xmlns='{FRAMING_NS}' to='{DOMAIN}' version='1.0'/>"}


def happy_path(framing: Any) -> list[tuple[str, str, int]]:
    """Login, bind and enable XEP-0198: a random run starts somewhere along it, so every
    phase gets random input, not only the first ones."""
    if framing is BOSH:
        opened = ("call", "bosh open", 0)
        element = "element"
    else:
        opened = ("data", OPEN[framing.name], 1)
        element = "data"
    return [
        opened,
        (element, C2S_INPUT[6], 1),  # <auth mechanism='PLAIN'>
        ("call", "password ok", 0),
        opened,
        (element, C2S_INPUT[14], 1),  # the bind iq
        ("call", "bound", 0),
        (element, C2S_INPUT[20], 1),  # <enable/>
    ]


def c2s_step(stream: C2SStream, kind: str, what: str, pieces: int) -> Callable[[], Any]:
    if kind == "call":
        return lambda: C2S_CALLS[what](stream)
    if kind == "element":
        return lambda: stream.receive_element(etree.fromstring(what))
    data = what.encode()
    size = max(1, len(data) // pieces)

    def feed() -> list[Any]:
        out: list[Any] = []
        for i in range(0, max(len(data), 1), size):
            out += stream.receive_data(data[i : i + size])
        return out

    return feed


def _ended(result: Any) -> list[StreamEnded]:
    items = result if isinstance(result, list) else [result]
    return [e for e in items if isinstance(e, StreamEnded)]


def check_run(stream: Any, rules: Rules[Any, Any], steps: list[Callable[[], Any]]) -> None:
    """Run ``steps``; nothing raises, every error is an RFC condition, closed is final."""
    reachable = rules.reachable()
    for step in steps:
        was_closed = stream.closed
        result = step()  # must not raise, whatever the order
        assert stream.phase in reachable
        ended = _ended(result)
        for end in ended:
            assert end.error is None or end.error.condition in STREAM_CONDITIONS
        if was_closed:
            assert stream.data_to_send() == b""
            assert all(e.error is None and not e.by_peer for e in ended)
        elif ended:
            assert stream.closed, "a StreamEnded while the stream stays open"
        if stream.closed:
            stream.data_to_send()


@pytest.mark.parametrize("framing", [STREAM, WEBSOCKET, BOSH], ids=lambda f: f.name)
@hsettings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(start=st.integers(0, 7), actions=st.lists(c2s_actions, max_size=25))
def test_random_c2s_sequences_never_raise(
    framing: Any, start: int, actions: list[tuple[str, str, int]]
) -> None:
    stream = C2SStream(settings(), framing=framing)
    steps = [*happy_path(framing)[:start], *actions]
    check_run(stream, c2s_states.RULES, [c2s_step(stream, *a) for a in steps])


@pytest.mark.parametrize("framing", [STREAM, WEBSOCKET, BOSH], ids=lambda f: f.name)
def test_the_happy_path_of_the_random_runs_reaches_established(framing: Any) -> None:
    stream = C2SStream(settings(), framing=framing)
    for action in happy_path(framing):
        c2s_step(stream, *action)()
    assert stream.phase is Phase.ESTABLISHED and stream.sm is not None


CDOMAIN = "irc.example.com"
CSECRET = "s3cret"
CHEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
    f"xmlns:stream='{ns.STREAMS}' to='{CDOMAIN}'>"
)
CINPUT = [
    CHEADER,
    CHEADER.replace(CDOMAIN, "nope.example.com"),
    CHEADER.replace("jabber:component:accept", ns.CLIENT),
    "<handshake>0000</handshake>",
    "<handshake/>",
    f"<message xmlns='jabber:component:accept' from='a@{CDOMAIN}' to='b@x'><body/></message>",
    "<message xmlns='jabber:component:accept' to='b@x'/>",
    "<iq xmlns='jabber:component:accept' from='irc.example.com' to='x' type='get'/>",
    "<bogus xmlns='urn:example'/>",
    f"<stream:error xmlns:stream='{ns.STREAMS}'><conflict xmlns='{ns.STREAM_ERRORS}'/>"
    "</stream:error>",
    "</stream:stream>",
    "<<",
]


@hsettings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 3),
    actions=st.lists(
        st.one_of(
            st.sampled_from(CINPUT),
            st.sampled_from(["right handshake", "accept", "close", "close with error"]),
        ),
        max_size=15,
    ),
)
def test_random_component_server_sequences_never_raise(start: int, actions: list[str]) -> None:
    stream = ComponentServerStream(ComponentSettings({CDOMAIN: CSECRET}))

    def step(action: str) -> Callable[[], Any]:
        if action == "right handshake":
            return lambda: stream.receive_data(
                b"<handshake>%s</handshake>" % handshake_digest(stream.stream_id, CSECRET).encode()
            )
        if action == "accept":
            return stream.accept
        if action == "close":
            return stream.close
        if action == "close with error":
            return lambda: stream.close("conflict", "taken")
        return lambda: stream.receive_data(action.encode())

    happy = [CHEADER, "right handshake", "accept"][:start]
    check_run(stream, SERVER_RULES, [step(a) for a in [*happy, *actions]])


SERVER_HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
    f"xmlns:stream='{ns.STREAMS}' id='abc' from='{CDOMAIN}'>"
)


@hsettings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 2),
    actions=st.lists(
        st.one_of(
            st.sampled_from([SERVER_HEADER, SERVER_HEADER.replace(" id='abc'", ""), *CINPUT]),
            st.just("close"),
        ),
        max_size=15,
    ),
)
def test_random_component_client_sequences_never_raise(start: int, actions: list[str]) -> None:
    stream = ComponentClientStream(CDOMAIN, CSECRET)
    stream.initiate()
    happy = [SERVER_HEADER, "<handshake/>"][:start]
    steps = [
        stream.close if a == "close" else (lambda a=a: stream.receive_data(a.encode()))
        for a in [*happy, *actions]
    ]
    check_run(stream, CLIENT_RULES, steps)


def test_the_component_client_refuses_a_second_handshake() -> None:
    stream = ComponentClientStream(CDOMAIN, CSECRET)
    stream.initiate()
    stream.receive_data(SERVER_HEADER.encode())
    assert [type(e).__name__ for e in stream.receive_data(b"<handshake/>")] == ["Established"]
    [ended] = stream.receive_data(b"<handshake/>")
    assert isinstance(ended, StreamEnded) and ended.error is not None
    assert ended.error.condition == "unsupported-stanza-type" and stream.closed
    assert CEvent.HANDSHAKE in CLIENT_RULES.peer
