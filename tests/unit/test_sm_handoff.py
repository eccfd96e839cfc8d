"""XEP-0198 §4 hand-off of an expired session's unacknowledged messages to offline
storage (issue 15 part 2): stored (committed) before the hand-off counts, and when
storage fails the sender gets an error instead of a silent loss."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.unit.routing_helpers import C, FakeOutbox, Harness, error_condition, running_harness
from tests.unit.test_roster_presence import ALICE, BOB, stored_bodies
from xmppd.config import LimitsConfig, SMConfig
from xmppd.jid import JID
from xmppd.session import Session
from xmppd.transport.sm import ResumptionManager


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path) as harness:
        yield harness


def unacked(body: str) -> bytes:
    return (
        f'<message xmlns="jabber:client" from="{BOB}/pc" to="{ALICE}/gone" type="chat" '
        f'id="{body}"><body>{body}</body></message>'
    ).encode()


async def test_handed_on_messages_are_stored_before_the_hand_off_returns(h: Harness) -> None:
    manager = ResumptionManager(h.router, SMConfig(), LimitsConfig())
    gone = Session(JID.parse(ALICE + "/gone"), FakeOutbox())
    await manager.redeliver(gone, [unacked("one"), unacked("two")])
    assert await stored_bodies(h) == ["one", "two"]


async def test_storage_failure_bounces_to_the_sender(h: Harness) -> None:
    bob = await h.connect(BOB + "/pc")
    manager = ResumptionManager(h.router, SMConfig(), LimitsConfig())

    def down(*args: object) -> bool:
        raise OSError("database unreachable")

    h.db.store_offline = down  # type: ignore[method-assign]
    gone = Session(JID.parse(ALICE + "/gone"), FakeOutbox())
    await manager.redeliver(gone, [unacked("lost?")])
    (err,) = [s for s in bob.take() if s.tag == C + "message"]
    assert err.get("type") == "error" and err.get("id") == "lost?"
    assert error_condition(err) == "internal-server-error"
