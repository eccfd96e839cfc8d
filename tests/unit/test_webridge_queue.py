"""webridge's queue (no connection made): bounded, oldest dropped, refused ones back in order."""

from __future__ import annotations

import pytest

from bridges.webridge import config as wconfig
from bridges.webridge.service import Webridge


def bridge(queue_size: int = 1000) -> Webridge:
    cfg = wconfig.load(
        None, {"WEBRIDGE_XMPP_SECRET": "s", "WEBRIDGE_MESSAGES_QUEUE_SIZE": str(queue_size)}
    )
    return Webridge(cfg)


async def test_datagrams_become_queued_texts_bad_ones_do_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wb = bridge()
    wb.handle_datagram(b'{"type": "new_member", "who": "alice"}')
    wb.handle_datagram(b"\xff")
    wb.handle_datagram(b"x", truncated=True)
    wb.handle_datagram(b"plain &amp; simple")
    assert [text for _, text, _ in wb.pending] == [
        "alice just registered. Welcome!",
        "plain & simple",
    ]
    assert "event=datagram_dropped reason=not_utf8" in caplog.text
    assert "event=datagram_dropped reason=oversized" in caplog.text


async def test_full_queue_drops_the_oldest_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    wb = bridge(queue_size=3)
    for i in range(7):
        wb.submit(f"m{i}")
    assert [text for _, text, _ in wb.pending] == ["m4", "m5", "m6"]
    assert wb.dropped == 4
    assert "event=queue_overflow dropped=1 total_dropped=1" in caplog.text
    wb._log_drops(force=True)
    assert "event=queue_overflow dropped=3 total_dropped=4" in caplog.text


async def test_refused_messages_go_back_in_their_original_order() -> None:
    wb = bridge()
    for i in range(5):
        wb.submit(f"m{i}")
    sent = [wb.pending.popleft() for _ in range(3)]  # m0..m2 went out
    for item in sent:  # all three bounce (not-acceptable), oldest first
        wb._requeue(item)
    assert [text for _, text, _ in wb.pending] == ["m0", "m1", "m2", "m3", "m4"]
    wb._requeue(wb.pending.popleft())
    assert [text for _, text, _ in wb.pending][:2] == ["m0", "m1"]
