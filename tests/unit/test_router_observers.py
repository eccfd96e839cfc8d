"""Router message observers: each one-to-one message seen once, before and after delivery
(what carbons and the accounts' archive build on), never a groupchat message, a refused
one's ``routed`` or a redelivery."""

from __future__ import annotations

import pytest
import trio
from lxml import etree

from tests.unit.routing_helpers import FakeOutbox
from xmppd.jid import JID
from xmppd.router import RoutedMessage, Router
from xmppd.session import Session


class Accounts:
    async def user_exists(self, localpart: str) -> bool:
        return localpart in ("alice", "bob")


class Offline:
    def __init__(self) -> None:
        self.kept: list[str] = []

    async def store(self, stanza: etree._Element, to: JID) -> bool:
        self.kept.append(str(to))
        return True

    def start_for(self, owner: str) -> None: ...

    def release(self, session: Session) -> frozenset[int]:
        return frozenset()


class Recorder:
    """Notes each call; ``prepare`` marks the stanza so delivery shows it ran first."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, RoutedMessage]] = []

    async def prepare(self, msg: RoutedMessage) -> bool:
        self.calls.append(("prepare", msg))
        msg.stanza.set("seen", "1")
        return True

    async def routed(self, msg: RoutedMessage) -> None:
        self.calls.append(("routed", msg))


class Service:
    """Like the MUC: changes what it is given (the router must hand it a copy)."""

    keeps_stanza = False

    def __init__(self) -> None:
        self.got: list[str] = []

    async def handle(self, stanza: etree._Element, to: JID, origin: object) -> None:
        self.got.append(stanza.get("seen") or "")
        stanza.set("from", "room@conference.example.org/nick")


class Keeper(Service):
    """Like a component: serialises what it is given as it is."""

    keeps_stanza = True

    async def handle(self, stanza: etree._Element, to: JID, origin: object) -> None:
        self.got.append(stanza.get("seen") or "")
        self.stanza = stanza


def setup() -> tuple[Router, Recorder, dict[str, tuple[Session, FakeOutbox]]]:
    router = Router("example.org", Accounts())
    recorder = Recorder()
    router.message_observers.append(recorder)
    router.offline_store = Offline()
    sessions = {}
    for full, priority in (("alice@example.org/a", 0), ("bob@example.org/1", 5),
                           ("bob@example.org/2", 1)):  # fmt: skip
        outbox = FakeOutbox()
        session = Session(JID.parse(full), outbox)
        session.available, session.priority = True, priority
        router.bind(session)
        sessions[full] = (session, outbox)
    return router, recorder, sessions


def message(to: str, kind: str = "chat", sender: str = "alice@example.org/a") -> etree._Element:
    return etree.fromstring(
        f'<message xmlns="jabber:client" from="{sender}" to="{to}" type="{kind}">'
        "<body>hi</body></message>"
    )


def run(coro: object) -> None:
    async def main() -> None:
        await coro  # type: ignore[misc]

    trio.run(main)


def test_a_message_to_a_bare_jid_is_seen_once_with_the_sessions_it_reached() -> None:
    router, recorder, sessions = setup()
    alice = sessions["alice@example.org/a"][0]
    run(router.route(message("bob@example.org"), alice))
    assert [c for c, _ in recorder.calls] == ["prepare", "routed"]
    msg = recorder.calls[1][1]
    assert msg.reached == [sessions["bob@example.org/1"][0]]
    assert (msg.origin, msg.local, msg.offline, str(msg.to)) == (
        alice,
        True,
        False,
        "bob@example.org",
    )
    # prepare ran before the bytes were made
    assert b'seen="1"' in sessions["bob@example.org/1"][1].sent[0]
    assert sessions["bob@example.org/2"][1].sent == []


def test_a_message_to_a_full_jid_and_to_oneself() -> None:
    router, recorder, sessions = setup()
    bob1 = sessions["bob@example.org/1"][0]
    run(router.route(message("bob@example.org/2", sender="bob@example.org/1"), bob1))
    assert recorder.calls[1][1].reached == [sessions["bob@example.org/2"][0]]
    bare = message("", sender="bob@example.org/1")
    del bare.attrib["to"]
    run(router.route(bare, bob1))
    assert str(recorder.calls[3][1].to) == "bob@example.org"


def test_offline_refused_groupchat_and_redelivery() -> None:
    router, recorder, sessions = setup()
    alice = sessions["alice@example.org/a"][0]
    for full in ("bob@example.org/1", "bob@example.org/2"):
        router.unbind(sessions[full][0])
    run(router.route(message("bob@example.org"), alice))
    assert recorder.calls[-1][0] == "routed" and recorder.calls[-1][1].offline is True
    recorder.calls.clear()
    run(router.route(message("nobody@example.org"), alice))  # service-unavailable
    assert [c for c, _ in recorder.calls] == ["prepare"]
    recorder.calls.clear()
    run(router.route(message("bob@example.org", kind="groupchat"), alice))
    run(router.redeliver(message("alice@example.org/gone"), JID.parse("alice@example.org")))
    assert recorder.calls == []
    assert sessions["alice@example.org/a"][1].sent  # the error and the redelivered message


def test_a_local_users_message_to_another_domains_service() -> None:
    router, recorder, sessions = setup()
    service = Service()
    router.services["conference.example.org"] = service  # type: ignore[assignment]
    alice = sessions["alice@example.org/a"][0]
    run(router.route(message("room@conference.example.org/nick"), alice))
    assert service.got == ["1"]
    assert [(c, m.local) for c, m in recorder.calls] == [("prepare", False), ("routed", False)]
    # the observers still see the message as the user sent it, not as the room rewrote it
    assert recorder.calls[1][1].stanza.get("from") == "alice@example.org/a"
    recorder.calls.clear()
    run(router.route(message("room@conference.example.org", kind="groupchat"), alice))
    assert recorder.calls == []


def test_a_service_that_keeps_what_it_is_given_gets_the_message_itself_not_a_copy() -> None:
    router, recorder, sessions = setup()
    keeper = Keeper()
    router.services["irc.example.org"] = keeper  # type: ignore[assignment]
    alice = sessions["alice@example.org/a"][0]
    run(router.route(message("someone@irc.example.org"), alice))
    assert keeper.got == ["1"]
    routed = recorder.calls[1][1]
    assert recorder.calls[1][0] == "routed" and keeper.stanza is routed.stanza


@pytest.mark.parametrize("kind", ["chat", "normal", "headline", "error"])
def test_without_observers_delivery_is_unchanged(kind: str) -> None:
    router, recorder, sessions = setup()
    router.message_observers.clear()
    alice = sessions["alice@example.org/a"][0]
    run(router.route(message("bob@example.org", kind=kind), alice))
    got = sessions["bob@example.org/1"][1].sent
    assert len(got) == 1 and b"seen" not in got[0]
    assert recorder.calls == []


class Broken:
    async def prepare(self, msg: RoutedMessage) -> bool:
        raise RuntimeError("database down")

    async def routed(self, msg: RoutedMessage) -> None:
        raise AssertionError("a failed prepare asked for nothing")


class BrokenLater:
    async def prepare(self, msg: RoutedMessage) -> bool:
        return True

    async def routed(self, msg: RoutedMessage) -> None:
        raise RuntimeError("database down")


def test_a_failing_observer_does_not_stop_delivery_or_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router, recorder, sessions = setup()
    router.message_observers[:0] = [Broken(), BrokenLater()]
    alice = sessions["alice@example.org/a"][0]
    run(router.route(message("bob@example.org"), alice))
    assert len(sessions["bob@example.org/1"][1].sent) == 1
    assert [c for c, _ in recorder.calls] == ["prepare", "routed"]
    assert caplog.text.count("event=message_observer_failed step=prepare") == 1
    assert caplog.text.count("event=message_observer_failed step=routed") == 1


class Quiet:
    """Has nothing to do after delivery for any message."""

    def __init__(self) -> None:
        self.routed_calls = 0

    async def prepare(self, msg: RoutedMessage) -> bool:
        return False

    async def routed(self, msg: RoutedMessage) -> None:
        self.routed_calls += 1


def test_an_observer_that_asks_for_nothing_is_not_called_after_delivery() -> None:
    router, recorder, sessions = setup()
    quiet = Quiet()
    router.message_observers.append(quiet)
    alice = sessions["alice@example.org/a"][0]
    run(router.route(message("bob@example.org"), alice))
    assert quiet.routed_calls == 0
    assert [c for c, _ in recorder.calls] == ["prepare", "routed"]


def test_a_rewriting_service_gets_the_message_itself_when_no_observer_reads_it_again() -> None:
    router, _recorder, sessions = setup()
    router.message_observers[:] = [Quiet()]
    service = Service()
    router.services["conference.example.org"] = service  # type: ignore[assignment]
    alice = sessions["alice@example.org/a"][0]
    stanza = message("room@conference.example.org/nick")
    run(router.route(stanza, alice))
    assert stanza.get("from") == "room@conference.example.org/nick"  # no copy was made


def test_a_services_own_delivery_to_chosen_sessions_is_observed() -> None:
    from xmppd.muc.wire import recipient

    router, recorder, sessions = setup()
    pm = message("ignored", sender="room@conference.example.org/Nick")
    rcpts = [recipient(JID.parse("bob@example.org/2")), recipient(JID.parse("bob@example.org/9"))]
    lost = run_value(router.deliver_observed(pm, rcpts))
    assert lost == ["bob@example.org/9"]
    assert b'seen="1"' in sessions["bob@example.org/2"][1].sent[0]
    assert sessions["bob@example.org/1"][1].sent == []  # only the chosen session
    (_, msg), (_, done) = recorder.calls
    assert str(msg.to) == "bob@example.org" and msg.local and msg.origin is None
    assert done.reached == [sessions["bob@example.org/2"][0]]


def run_value(coro: object) -> object:
    box: list[object] = []

    async def main() -> None:
        box.append(await coro)  # type: ignore[misc]

    trio.run(main)
    return box[0]
