"""bench/soak's bookkeeping: what counts as lost, duplicated or unacknowledged, the
growth-trend fit and the lag quantile — the soak's verdicts rest on these."""

from __future__ import annotations

from bench.soak import report
from bench.soak.clients import Endpoint, SoakClient, stanza_id
from bench.soak.ledger import BODY, Ledger, Receiver, body
from bench.soak.sampler import quantile


def test_counts_lost_duplicated_and_unacknowledged() -> None:
    ledger = Ledger()
    early = ledger.new(sender=1)  # sent before the receiver joined: not expected
    rx = Receiver()
    rx.joined_at = ledger.sent_at[early] + 1e-9
    serials = [ledger.new(sender=1) for _ in range(5)]
    for g in serials[:4]:
        ledger.echoed(g)  # the last one was never echoed to its sender
    rx.got_live(serials[0])
    rx.got_live(serials[1])
    rx.got_live(serials[1])  # a real duplicate, counted even though the ids match
    rx.got_archived(serials[2])  # recovered from the archive after a rejoin
    rx.got_live(serials[4])  # delivered though its sender never saw the echo
    lost: list[int] = []
    counts = ledger.count(rx, lost=lost)
    assert lost == [serials[3]]
    assert counts == {
        "expected": 4,
        "received": 3,
        "lost": 1,  # serials[3]
        "duplicated": 1,
        "archive_duplicated": 0,
        "unacked_received": 1,
    }


def test_a_receiver_that_never_joined_expects_nothing() -> None:
    ledger = Ledger()
    ledger.echoed(ledger.new(sender=0))
    assert ledger.count(Receiver())["expected"] == 0


def test_body_and_stanza_id_are_found_in_either_quote_style() -> None:
    xml = (
        f'<message from="sax@conference.localhost/n1" type="groupchat"><body>{body(7, 1)}'
        '</body><stanza-id xmlns="urn:xmpp:sid:0" id="abc" by="sax@conference.localhost"/>'
        "</message>"
    )
    m = BODY.search(xml)
    assert m is not None and (int(m.group(1)), int(m.group(2))) == (7, 1)
    assert stanza_id(xml) == "abc"
    other = xml.replace('by="sax@conference.localhost"', "by='elsewhere@localhost'")
    assert stanza_id(other) == ""


def test_trend_is_fitted_per_server_process_after_warm_up() -> None:
    rows = [
        {"t": 60.0 * i, "pid": 1, "rss_kib": 1000 + 100 * i, "fds": 50, "lag_p99_s": 0.01}
        for i in range(6)
    ] + [
        {"t": 60.0 * i, "pid": 2, "rss_kib": 800, "fds": 40 + i, "lag_p99_s": 0.01}
        for i in range(6, 10)
    ]
    trends = report.trends(rows, warmup_s=60.0)
    assert [t["pid"] for t in trends] == [1, 2]
    assert trends[0]["rss_slope_kib_per_min"] == 100.0
    assert trends[0]["points"] == 5  # the warm-up sample is left out
    assert trends[1]["rss_slope_kib_per_min"] == 0.0
    assert trends[1]["fds_slope_per_min"] == 1.0


def test_lag_quantile_is_the_bucket_upper_bound() -> None:
    buckets = {0.001: 50.0, 0.01: 98.0, 0.1: 99.0, 1.0: 100.0, float("inf"): 100.0}
    assert quantile(buckets, 0.5) == 0.001
    assert quantile(buckets, 0.99) == 0.1
    assert quantile({}, 0.99) is None


def test_one_to_one_counts_only_what_the_server_acknowledged() -> None:
    ledger = Ledger()
    acked_got, acked_lost, unacked_got, twice, resent = (ledger.new_chat(3) for _ in range(5))
    for serial in (acked_got, acked_lost, twice, resent):
        ledger.chat_acked(serial)
    for serial in (acked_got, unacked_got):
        ledger.chat_received(serial, "id-a")
    ledger.chat_received(twice, "stored-1")  # the server's one stanza, delivered again
    ledger.chat_received(twice, "stored-1")
    ledger.chat_received(resent, "first")  # two stanzas: the sender sent it twice
    ledger.chat_received(resent, "second")
    assert ledger.chat_counts() == {
        "sent": 5,
        "acked": 4,
        "received": 3,
        "lost": 1,
        "duplicated": 2,
        "duplicated_same_stanza_id": 1,
        "unacked_received": 1,
    }


def test_a_one_to_one_copy_carries_the_recipients_archive_id() -> None:
    ledger = Ledger()
    client = SoakClient(1, "tcp", True, Endpoint("127.0.0.1", 1, 2), ledger, "127.0.0.1")
    chat = ledger.new_chat(1)
    client._message(
        f"<message from='soak2@localhost/soak' type='chat' id='c{chat}'>"
        f"<body>soak1 {chat}</body><stanza-id xmlns='urn:xmpp:sid:0' id='arch-7' "
        "by='soak1@localhost'/></message>"
    )
    assert ledger.chat_ids[chat] == ["arch-7"]


def test_live_messages_during_a_catch_up_do_not_move_the_resume_point() -> None:
    """A rejoin pages the archive from the last stanza-id seen; live messages that
    arrive meanwhile are newer than the gap, so a session cut mid-way must resume from
    the last archived page, not from them (else the rest of the gap is never fetched)."""
    ledger = Ledger()
    client = SoakClient(1, "tcp", True, Endpoint("127.0.0.1", 1, 2), ledger, "127.0.0.1")
    client.last_sid = "before-gap"
    client._catching_up = True
    serial = ledger.new(sender=2)
    client._message(
        f"<message from='sax@conference.localhost/n2' type='groupchat'>"
        f"<body>{body(serial, 2)}</body><stanza-id xmlns='urn:xmpp:sid:0' id='live-1' "
        "by='sax@conference.localhost'/></message>"
    )
    assert client.last_sid == "before-gap" and client._live_sid == "live-1"
    assert client.rx.live[serial] == 1
    client._catching_up = False
    client._message(
        f"<message from='sax@conference.localhost/n2' type='groupchat'>"
        f"<body>{body(ledger.new(sender=2), 2)}</body><stanza-id xmlns='urn:xmpp:sid:0' "
        "id='live-2' by='sax@conference.localhost'/></message>"
    )
    assert client.last_sid == "live-2"
