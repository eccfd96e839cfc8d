"""XEP-0352 client state indication: the stream's nonzas, the held queue, the session."""

from __future__ import annotations

from tests.unit.stream_helpers import Driver, stream_error
from xmppd.jid import JID
from xmppd.session import Session
from xmppd.stream.c2s import ClientStateChanged
from xmppd.stream.csi import HeldQueue, hold_key
from xmppd.stream.sm import StreamManagement

CSI = "{urn:xmpp:csi:0}"
ME = "juliet@example.com"
ROOM = "lounge@conference.example.com"


def nicks(room: str) -> str | None:
    return "Juliet" if room == ROOM else None


def key(xml: str) -> str | None:
    return hold_key(xml.encode(), ME, nicks)


def presence(sender: str, show: str = "away") -> bytes:
    return f"<presence from='{sender}' to='{ME}/b'><show>{show}</show></presence>".encode()


def chatstate(sender: str) -> bytes:
    return (
        f"<message from='{sender}' to='{ME}/b' type='chat'>"
        "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
    ).encode()


def chat(sender: str, body: str = "hi") -> bytes:
    return (
        f"<message from='{sender}' to='{ME}/b' type='chat'><body>{body}</body></message>".encode()
    )


# ----------------------------------------------------------------- the stream
def test_csi_feature_is_offered_after_bind_only_when_enabled() -> None:
    d = Driver(tls_required=False, csi_enabled=True)
    assert d.open().find(CSI + "csi") is None  # before authentication
    d = Driver(tls_required=False, csi_enabled=True)
    d.bind()
    assert b"urn:xmpp:csi:0" in d.raw
    events = d.send(b"<inactive xmlns='urn:xmpp:csi:0'/><active xmlns='urn:xmpp:csi:0'/>")
    assert [e.active for e in events if isinstance(e, ClientStateChanged)] == [False, True]
    assert d.take() == []  # §4.2: no reply


def test_csi_when_disabled_or_before_bind_is_a_stream_error() -> None:
    d = Driver(tls_required=False)
    d.bind()
    assert b"urn:xmpp:csi:0" not in d.raw
    d.send(b"<inactive xmlns='urn:xmpp:csi:0'/>")
    assert stream_error(d.take()) == "unsupported-stanza-type"
    d = Driver(tls_required=False, csi_enabled=True)
    d.login()
    d.send(b"<inactive xmlns='urn:xmpp:csi:0'/>")
    assert stream_error(d.take()) == "not-authorized"


# -------------------------------------------------------------- classification
def test_urgent_stanzas_are_not_held() -> None:
    assert key("<iq type='get' id='1' from='x@example.com/r'/>") is None
    assert key(chat("romeo@example.com/r").decode()) is None
    assert key("<message type='error' from='a@b'/>") is None
    assert key("<presence type='subscribe' from='romeo@example.com'/>") is None
    assert key("<presence type='unsubscribed' from='romeo@example.com'/>") is None
    self_presence = (
        f"<presence from='{ROOM}/Juliet'><x xmlns='http://jabber.org/protocol/muc#user'>"
        "<status code='110'/></x></presence>"
    )
    assert key(self_presence) is None
    carbon = "<message from='juliet@example.com'><received xmlns='urn:xmpp:carbons:2'/></message>"
    assert key(carbon) is None
    own_pep = (
        f"<message from='{ME}'><event xmlns='http://jabber.org/protocol/pubsub#event'>"
        "<items node='urn:xmpp:bookmarks:1'/></event></message>"
    )
    assert key(own_pep) is None
    assert key("<message from='a@b'><unknown xmlns='urn:example'/></message>") is None
    stored = (
        "<message from='r@example.com/x'><received xmlns='urn:xmpp:receipts' id='1'/>"
        "<delay xmlns='urn:xmpp:delay' from='example.com' stamp='2026-01-01T00:00:00Z'/>"
        "</message>"
    )
    assert key(stored) is None  # from offline storage
    assert key(stored.replace("from='example.com'", "from='elsewhere.org'")) == ""


def test_mentions_of_the_rooms_nick_are_urgent_other_groupchat_waits() -> None:
    def groupchat(body: str, room: str = ROOM, speaker: str = "Romeo") -> str | None:
        return key(
            f"<message from='{room}/{speaker}' type='groupchat'><body>{body}</body></message>"
        )

    assert groupchat("juliet: are you there?") is None
    assert groupchat("hello @JULIET!") is None
    assert groupchat("hello everyone") == ""
    assert groupchat("juliettes are flowers") == ""  # not the word
    assert groupchat("juliet", speaker="Juliet") == ""  # her own echo
    assert groupchat("juliet", room="other@conference.example.com") == ""  # not her room
    subject = f"<message from='{ROOM}' type='groupchat'><subject>s</subject></message>"
    assert key(subject) == ""


def test_presence_chat_states_receipts_and_contacts_pep_wait() -> None:
    assert key(presence("romeo@example.com/r").decode()) == "romeo@example.com/r"
    assert key(f"<presence type='unavailable' from='{ROOM}/Romeo'/>") == f"{ROOM}/Romeo"
    assert key(chatstate("romeo@example.com/r").decode()) == ""
    receipt = "<message from='r@e/x'><received xmlns='urn:xmpp:receipts' id='1'/></message>"
    assert key(receipt) == ""
    pep = (
        "<message from='romeo@example.com'><event xmlns='http://jabber.org/protocol/pubsub#event'>"
        "<items node='http://jabber.org/protocol/tune'/></event></message>"
    )
    assert key(pep) == ""


# ------------------------------------------------------------------ the queue
def test_a_burst_of_presence_keeps_the_latest_per_sender_in_order() -> None:
    q = HeldQueue(ME, nicks, max_held=100, max_bytes=100_000)
    senders = [f"c{i}@example.com/r" for i in range(3)]
    for n in range(200):
        assert q.offer(presence(senders[n % 3], f"s{n}")) is None
    assert len(q) == 3
    assert q.offer(chatstate(senders[0])) is None
    last = q.offer(presence(senders[0], "last"))
    assert last is None
    out = q.drain()
    # each sender's newest at its own position; c0's chat state before its newer presence
    assert out == [
        presence(senders[2], "s197"),
        presence(senders[1], "s199"),
        chatstate(senders[0]),
        presence(senders[0], "last"),
    ]
    assert q.held_bytes == 0 and len(q) == 0


def test_an_urgent_stanza_flushes_what_came_before_it() -> None:
    q = HeldQueue(ME, nicks, max_held=100, max_bytes=100_000)
    q.offer(presence("romeo@example.com/r"))
    q.offer(chatstate("romeo@example.com/r"))
    out = q.offer(chat("romeo@example.com/r"))
    assert out == [
        presence("romeo@example.com/r"),
        chatstate("romeo@example.com/r"),
        chat("romeo@example.com/r"),
    ]
    assert len(q) == 0


def test_the_bounds_flush_everything_in_order() -> None:
    q = HeldQueue(ME, nicks, max_held=3, max_bytes=100_000)
    held = [chatstate(f"c{i}@example.com/r") for i in range(3)]
    for data in held:
        assert q.offer(data) is None
    fourth = chatstate("c3@example.com/r")
    assert q.offer(fourth) == [*held, fourth]
    q = HeldQueue(ME, nicks, max_held=100, max_bytes=len(held[0]) * 2)
    assert q.offer(held[0]) is None and q.offer(held[1]) is None
    assert q.offer(held[2]) == held


# ---------------------------------------------------------------- the session
class Box:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def enqueue(self, data: bytes) -> bool:
        self.sent.append(data)
        return True

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        raise AssertionError("not closed")


def test_session_holds_while_inactive_and_sm_counts_only_what_went_out() -> None:
    box = Box()
    s = Session(JID.parse(f"{ME}/b"), box)
    s.sm = StreamManagement(ME, token=None, max_seconds=0, request_every=1000, max_unacked=500)
    s.send(presence("romeo@example.com/r"))
    assert len(s.sm) == 1
    s.set_inactive(HeldQueue(ME, nicks, max_held=50, max_bytes=100_000))
    for n in range(50):
        assert s.send(presence("romeo@example.com/r", f"s{n}")) is True
    s.send(chatstate("romeo@example.com/r"))
    assert len(box.sent) == 1 and len(s.sm) == 1  # nothing held was counted
    s.send(chat("nurse@example.com/r"))  # urgent: flushes the two held, then itself
    assert box.sent[1:] == [
        presence("romeo@example.com/r", "s49"),
        chatstate("romeo@example.com/r"),
        chat("nurse@example.com/r"),
    ]
    assert len(s.sm) == 4
    s.send(presence("romeo@example.com/r", "again"))
    assert len(box.sent) == 4
    assert s.set_active() == 1
    assert box.sent[-1] == presence("romeo@example.com/r", "again") and s.csi is None
    assert len(s.sm) == 5
    s.send(presence("romeo@example.com/r", "active"))  # active: straight out
    assert box.sent[-1] == presence("romeo@example.com/r", "active")


def test_a_second_inactive_keeps_the_first_queue() -> None:
    s = Session(JID.parse(f"{ME}/b"), Box())
    first = HeldQueue(ME, nicks, max_held=5, max_bytes=1000)
    s.set_inactive(first)
    s.set_inactive(HeldQueue(ME, nicks, max_held=5, max_bytes=1000))
    assert s.csi is first
