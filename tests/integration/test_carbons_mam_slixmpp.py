"""XEP-0280 carbons and the accounts' XEP-0313 archive against a real ``xmppd serve``, with
slixmpp's xep_0280, xep_0313 and xep_0441 plugins over real sockets: two resources of one
account and a contact; copies received/sent/private; archive paging both ways, ``with``,
preferences, stanza-ids equal to archive ids, an offline message archived once; and bad
queries (each the XEP's error, nothing changed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.slix import Client, login, run
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = pytest.mark.integration

CARBONS = "urn:xmpp:carbons:2"
MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
PLUGINS = ["xep_0280", "xep_0313", "xep_0441", "xep_0059", "xep_0297"]
MAX_PAGE = 20


@pytest.fixture
def server(tmp_path: Path) -> Iterator[XmppdProcess]:
    with running_server(
        tmp_path, users=("alice", "bob", "carol"), mam={"max_page": MAX_PAGE}
    ) as srv:
        yield srv


async def _client(server: XmppdProcess, jid: str, *, carbons: bool = True) -> Client:
    client = await login(server, jid, plugins=PLUGINS)
    if carbons:
        await client.plugin["xep_0280"].enable(timeout=5)
    return client


def _queue(client: Client, event: str) -> asyncio.Queue[Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    client.add_event_handler(event, queue.put_nowait)
    return queue


async def _nothing(queue: asyncio.Queue[Any], seconds: float = 0.6) -> bool:
    try:
        await asyncio.wait_for(queue.get(), seconds)
    except TimeoutError:
        return True
    return False


async def _chat(client: Client, to: str, body: str) -> None:
    client.send_message(mto=to, mbody=body, mtype="chat")


async def _archive(client: Client, **kwargs: Any) -> tuple[list[tuple[str, str]], Any]:
    """One query of ``client``'s own archive: ``[(archive id, body)]`` and the fin."""
    iq = await client.plugin["xep_0313"].retrieve(jid=client.boundjid.bare, timeout=5, **kwargs)
    out = []
    for msg in iq["mam"]["results"]:
        forwarded = msg["mam_result"]["forwarded"]["stanza"]
        out.append((msg["mam_result"]["id"], forwarded["body"]))
    return out, iq["mam_fin"]


async def _raw_query(client: Client, inner: str, to: str | None = None) -> str:
    """A MAM query from raw XML; the error condition, or "result"."""
    iq = client.make_iq_set(ito=to)
    iq.append(ElementTree.fromstring(f"<query xmlns='{MAM}' queryid='raw'>{inner}</query>"))  # noqa: S314 - the test's own literal
    try:
        await iq.send(timeout=5)
    except IqError as exc:
        return str(exc.condition)
    return "result"


def _form(**fields: str) -> str:
    values = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
    return (
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
        f"<value>{MAM}</value></field>{values}</x>"
    )


def _stanza_ids(msg: Any) -> list[tuple[str | None, str | None]]:
    return [(e.get("by"), e.get("id")) for e in msg.xml.iter(f"{{{SID}}}stanza-id")]


# --------------------------------------------------------------------------- carbons
def test_carbons_received_sent_and_private(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        desk = await _client(server, "alice@localhost/desk")
        phone = await _client(server, "alice@localhost/phone")
        quiet = await _client(server, "alice@localhost/quiet", carbons=False)
        bob = await _client(server, "bob@localhost/b", carbons=False)
        info = await desk.plugin["xep_0030"].get_info(jid="localhost")
        out["feature"] = CARBONS in info["disco_info"]["features"]
        received, sent = _queue(phone, "carbon_received"), _queue(phone, "carbon_sent")
        quiet_copies = _queue(quiet, "carbon_received")
        desk_copies = _queue(desk, "carbon_received")

        await _chat(bob, "alice@localhost/desk", "to the desk")
        got = await desk.next_message()
        out["desk_body"] = got["body"]
        carbon = await asyncio.wait_for(received.get(), 5)
        inner = carbon["carbon_received"]
        out["received"] = (str(carbon["from"]), inner["body"], str(inner["to"]))
        out["desk_no_copy"] = await _nothing(desk_copies, 0.3)
        out["quiet_no_copy"] = await _nothing(quiet_copies, 0.3)

        await _chat(desk, "bob@localhost", "from the desk")
        await bob.next_message()
        carbon = await asyncio.wait_for(sent.get(), 5)
        inner = carbon["carbon_sent"]
        out["sent"] = (str(carbon["from"]), inner["body"], str(inner["to"]))
        out["sent_sid"] = _stanza_ids(inner)

        private = desk.make_message(mto="bob@localhost", mbody="just us", mtype="chat")
        private.append(ElementTree.fromstring(f"<private xmlns='{CARBONS}'/>"))  # noqa: S314
        private.send()
        delivered = await bob.next_message()
        out["private_body"] = delivered["body"]
        out["private_stripped"] = delivered.xml.find(f"{{{CARBONS}}}private") is None
        out["private_no_copy"] = await _nothing(sent)

        await phone.plugin["xep_0280"].disable(timeout=5)
        await _chat(bob, "alice@localhost/desk", "after disable")
        await desk.next_message()
        out["disabled_no_copy"] = await _nothing(received)
        for c in (desk, phone, quiet, bob):
            await c.close()
        return out

    out = run(scenario)
    assert out["feature"] is True
    assert out["desk_body"] == "to the desk"
    assert out["received"] == ("alice@localhost", "to the desk", "alice@localhost/desk")
    assert out["desk_no_copy"] and out["quiet_no_copy"]
    assert out["sent"] == ("alice@localhost", "from the desk", "bob@localhost")
    # the sent copy carries the sender's own archive id, beside the recipient's
    assert sorted(by for by, _ in out["sent_sid"]) == ["alice@localhost", "bob@localhost"]
    assert out["private_body"] == "just us" and out["private_stripped"]
    assert out["private_no_copy"]
    assert out["disabled_no_copy"]


def test_carbons_enable_is_a_set(server: XmppdProcess) -> None:
    async def scenario() -> str:
        alice = await _client(server, "alice@localhost/a", carbons=False)
        iq = alice.make_iq_get()
        iq.append(ElementTree.fromstring(f"<enable xmlns='{CARBONS}'/>"))  # noqa: S314
        try:
            await iq.send(timeout=5)
            return "result"
        except IqError as exc:
            return str(exc.condition)
        finally:
            await alice.close()

    assert run(scenario) == "bad-request"


# ------------------------------------------------------------------------------- MAM
def test_archive_paging_with_filter_and_stanza_ids(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await _client(server, "alice@localhost/a")
        bob = await _client(server, "bob@localhost/b")
        carol = await _client(server, "carol@localhost/c")
        info = await alice.plugin["xep_0030"].get_info(jid="alice@localhost")
        out["feature"] = MAM in info["disco_info"]["features"]
        delivered_ids = []
        for i in range(7):
            await _chat(alice, "bob@localhost", f"m{i}")
            got = await bob.next_message()
            delivered_ids.append(_stanza_ids(got))
        await _chat(carol, "bob@localhost", "from carol")
        await bob.next_message()

        everything, fin = await _archive(bob)
        out["all"] = [body for _, body in everything]
        out["complete"] = fin.xml.get("complete") == "true"
        out["ids_match"] = [[("bob@localhost", i)] for i, _ in everything[:7]] == delivered_ids

        page1, fin1 = await _archive(bob, rsm={"max": 3})
        page2, _ = await _archive(bob, rsm={"max": 3, "after": fin1["rsm"]["last"]})
        out["forward"] = [b for _, b in page1] + [b for _, b in page2]
        out["page1_complete"] = fin1.xml.get("complete") == "true"

        # slixmpp pages backwards from an empty <before/>, then <before>first</before>
        newest_first = bob.plugin["xep_0313"].iterate(
            jid=bob.boundjid.bare, reverse=True, rsm={"max": 3}, total=6
        )
        out["backward"] = [
            m["mam_result"]["forwarded"]["stanza"]["body"] async for m in newest_first
        ]

        with_alice, _ = await _archive(bob, with_jid="alice@localhost")
        with_carol_full, _ = await _archive(bob, with_jid="carol@localhost/c")
        with_carol_other, _ = await _archive(bob, with_jid="carol@localhost/elsewhere")
        out["with"] = (len(with_alice), [b for _, b in with_carol_full], with_carol_other)
        sent, _ = await _archive(alice)
        out["alice"] = [b for _, b in sent]
        out["alice_ids_differ"] = {i for i, _ in sent}.isdisjoint(i for i, _ in everything)
        for c in (alice, bob, carol):
            await c.close()
        return out

    out = run(scenario)
    assert out["feature"] is True
    assert out["all"] == [f"m{i}" for i in range(7)] + ["from carol"]
    assert out["complete"] is True
    assert out["ids_match"] is True
    assert out["forward"] == ["m0", "m1", "m2", "m3", "m4", "m5"]
    assert out["page1_complete"] is False
    assert out["backward"] == ["from carol", "m6", "m5", "m4", "m3", "m2"]
    assert out["with"] == (7, ["from carol"], [])
    assert out["alice"] == [f"m{i}" for i in range(7)]
    assert out["alice_ids_differ"] is True


def test_prefs_never_and_always(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await _client(server, "alice@localhost/a")
        bob = await _client(server, "bob@localhost/b")
        carol = await _client(server, "carol@localhost/c")
        prefs = alice.plugin["xep_0441"]
        out["initial"] = (await prefs.get_preferences(timeout=5))[0]
        await prefs.set_preferences("never", always=["carol@localhost"], timeout=5)
        default, always, never = await prefs.get_preferences(timeout=5)
        out["stored"] = (default, sorted(str(j) for j in always), sorted(str(j) for j in never))
        await _chat(bob, "alice@localhost", "not kept")
        got = await alice.next_message()
        out["unarchived_sid"] = _stanza_ids(got)
        await _chat(carol, "alice@localhost", "kept")
        await alice.next_message()
        kept, _ = await _archive(alice)
        out["kept"] = [b for _, b in kept]
        bob_has, _ = await _archive(bob)
        out["bob_kept"] = [b for _, b in bob_has]
        for c in (alice, bob, carol):
            await c.close()
        return out

    out = run(scenario)
    assert out["initial"] == "always"
    assert out["stored"] == ("never", ["carol@localhost"], [])
    assert out["unarchived_sid"] == []
    assert out["kept"] == ["kept"]
    assert out["bob_kept"] == ["not kept"]  # the sender's own archive follows its own prefs


def test_offline_message_archived_once_with_its_id(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        alice = await _client(server, "alice@localhost/a")
        await _chat(alice, "bob@localhost", "while you were out")
        await asyncio.sleep(0.3)
        bob = await _client(server, "bob@localhost/b")
        got = await bob.next_message()
        archived, _ = await _archive(bob)
        out = {"body": got["body"], "sid": _stanza_ids(got), "archived": archived}
        for c in (alice, bob):
            await c.close()
        return out

    out = run(scenario)
    assert out["body"] == "while you were out"
    assert len(out["archived"]) == 1
    assert out["sid"] == [("bob@localhost", out["archived"][0][0])]


def test_forged_stanza_id_is_removed(server: XmppdProcess) -> None:
    async def scenario() -> tuple[list[Any], list[tuple[str, str]]]:
        alice = await _client(server, "alice@localhost/a")
        bob = await _client(server, "bob@localhost/b")
        msg = bob.make_message(mto="alice@localhost", mbody="trust me", mtype="chat")
        msg.append(
            ElementTree.fromstring(  # noqa: S314 - the test's own literal
                f"<stanza-id xmlns='{SID}' by='alice@localhost' id='forged'/>"
            )
        )
        msg.append(
            ElementTree.fromstring(f"<stanza-id xmlns='{SID}' by='elsewhere' id='x'/>")  # noqa: S314
        )
        msg.send()
        got = await alice.next_message()
        archived, _ = await _archive(alice)
        for c in (alice, bob):
            await c.close()
        return _stanza_ids(got), archived

    sids, archived = run(scenario)
    assert ("alice@localhost", "forged") not in sids
    assert [s for s in sids if s[0] == "alice@localhost"] == [("alice@localhost", archived[0][0])]
    assert ("elsewhere", "x") in sids


def test_bad_queries_get_the_xeps_errors(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await _client(server, "alice@localhost/a")
        bob = await _client(server, "bob@localhost/b")
        for i in range(MAX_PAGE + 5):
            await _chat(alice, "bob@localhost", f"n{i}")
        for _ in range(MAX_PAGE + 5):
            await bob.next_message()
        page, fin = await _archive(bob, rsm={"max": 1_000_000_000})
        out["clamped"] = (len(page), fin.xml.get("complete") == "true")
        rsm = "<set xmlns='http://jabber.org/protocol/rsm'>{}</set>"
        out["bad_date"] = await _raw_query(bob, _form(start="yesterday"))
        out["bad_month"] = await _raw_query(bob, _form(end="2024-13-01T00:00:00Z"))
        out["unknown_field"] = await _raw_query(bob, _form(colour="blue"))
        out["bad_with"] = await _raw_query(bob, _form(**{"with": "@@"}))
        out["bad_max"] = await _raw_query(bob, rsm.format("<max>lots</max>"))
        out["unknown_after"] = await _raw_query(bob, rsm.format("<after>nope</after>"))
        out["other_account"] = await _raw_query(bob, "", to="alice@localhost")
        bad_prefs = bob.make_iq_set()
        bad_prefs.append(ElementTree.fromstring(f"<prefs xmlns='{MAM}' default='sometimes'/>"))  # noqa: S314
        try:
            await bad_prefs.send(timeout=5)
            out["bad_prefs"] = "result"
        except IqError as exc:
            out["bad_prefs"] = str(exc.condition)
        out["prefs_after"] = (await bob.plugin["xep_0441"].get_preferences(timeout=5))[0]
        for c in (alice, bob):
            await c.close()
        return out

    out = run(scenario)
    assert out["clamped"] == (MAX_PAGE, False)
    assert out["bad_date"] == "bad-request"
    assert out["bad_month"] == "bad-request"
    assert out["unknown_field"] == "feature-not-implemented"  # XEP-0313 §4.1.5
    assert out["bad_with"] == "bad-request"
    assert out["bad_max"] == "bad-request"
    assert out["unknown_after"] == "item-not-found"
    assert out["other_account"] == "forbidden"
    assert out["bad_prefs"] == "bad-request"
    assert out["prefs_after"] == "always"


def test_a_page_of_large_messages_does_not_cut_the_client_off(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        alice = await _client(server, "alice@localhost/a")
        bob = await _client(server, "bob@localhost/b")
        for i in range(8):
            await _chat(alice, "bob@localhost", f"{i}" + "x" * 120_000)
            await bob.next_message(timeout=10)
        first, fin = await _archive(bob, rsm={"max": MAX_PAGE})
        rest, fin_rest = await _archive(bob, rsm={"max": MAX_PAGE, "after": fin["rsm"]["last"]})
        out = {
            "first": [b[0] for _, b in first],
            "complete": fin.xml.get("complete") == "true",
            "all": [b[0] for _, b in first + rest],
            "rest_complete": fin_rest.xml.get("complete") == "true",
            "connected": bob.is_connected() and not bob.stream_errors,
        }
        for c in (alice, bob):
            await c.close()
        return out

    out = run(scenario, timeout=60)
    assert 1 <= len(out["first"]) < 8  # half of the 1 MiB send queue: about four
    assert out["complete"] is False
    assert out["connected"] is True
    n = len(out["all"])  # the next page goes on where the cut one stopped
    assert n > len(out["first"]) and out["all"] == [str(i) for i in range(n)]


async def _raw_results(client: Client, inner: str) -> tuple[list[tuple[str, str]], Any]:
    """A raw query's result messages ``[(id, body)]`` (in arrival order) and its iq."""
    got: list[tuple[str, str]] = []

    def collect(msg: Any) -> None:
        result = msg.xml.find(f"{{{MAM}}}result")
        if result is not None:
            got.append((result.get("id"), result.findtext(".//{jabber:client}body")))

    name = f"raw-mam-{len(inner)}-{id(got)}"
    client.register_handler(
        Callback(name, MatchXPath(f"{{jabber:client}}message/{{{MAM}}}result"), collect)
    )
    iq = client.make_iq_set()
    iq.append(ElementTree.fromstring(f"<query xmlns='{MAM}' queryid='x'>{inner}</query>"))  # noqa: S314
    try:
        reply = await iq.send(timeout=5)
    finally:
        client.remove_handler(name)
    return got, reply


def test_extended_ids_flip_page_and_metadata(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await _client(server, "alice@localhost/a")
        bob = await _client(server, "bob@localhost/b")
        info = await bob.plugin["xep_0030"].get_info(jid="bob@localhost")
        out["extended"] = f"{MAM}#extended" in info["disco_info"]["features"]
        empty = await bob.plugin["xep_0313"].get_archive_metadata(timeout=5)
        out["empty_metadata"] = len(empty.xml.find(f"{{{MAM}}}metadata"))
        for i in range(5):
            await _chat(alice, "bob@localhost", f"e{i}")
            await bob.next_message()
        everything, _ = await _archive(bob)
        ids = [i for i, _ in everything]
        meta = await bob.plugin["xep_0313"].get_archive_metadata(timeout=5)
        el = meta.xml.find(f"{{{MAM}}}metadata")
        out["metadata"] = (el.find(f"{{{MAM}}}start").get("id"), el.find(f"{{{MAM}}}end").get("id"))
        out["ids_expected"] = (ids[0], ids[-1])
        picked, _ = await _raw_results(bob, _form(ids=ids[3]) + "")
        out["picked"] = [b for _, b in picked]
        between, _ = await _raw_results(bob, _form(**{"after-id": ids[0], "before-id": ids[4]}))
        out["between"] = [b for _, b in between]
        flipped, reply = await _raw_results(
            bob, "<set xmlns='http://jabber.org/protocol/rsm'><max>3</max></set><flip-page/>"
        )
        out["flipped"] = [b for _, b in flipped]
        out["flipped_first"] = (
            reply.xml.findtext(".//{http://jabber.org/protocol/rsm}first") == ids[0]
        )
        out["unknown_id"] = await _raw_query(bob, _form(ids="not-there"))
        for c in (alice, bob):
            await c.close()
        return out

    out = run(scenario)
    assert out["extended"] is True
    assert out["empty_metadata"] == 0
    assert out["metadata"] == out["ids_expected"]
    assert out["picked"] == ["e3"]
    assert out["between"] == ["e1", "e2", "e3"]
    assert out["flipped"] == ["e2", "e1", "e0"] and out["flipped_first"] is True
    assert out["unknown_id"] == "item-not-found"


def test_room_private_messages_sent_are_copied_received_are_not(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        room = "sax@conference.localhost"
        desk = await login(server, "alice@localhost/desk", plugins=[*PLUGINS, "xep_0045"])
        await desk.plugin["xep_0280"].enable(timeout=5)
        phone = await _client(server, "alice@localhost/phone")
        bob = await login(server, "bob@localhost/b", plugins=["xep_0045"])
        await desk.plugin["xep_0045"].join_muc_wait(room, "Alice", maxstanzas=0, timeout=10)
        await bob.plugin["xep_0045"].join_muc_wait(room, "Bob", maxstanzas=0, timeout=10)
        received, sent = _queue(phone, "carbon_received"), _queue(phone, "carbon_sent")
        pm = bob.make_message(mto=f"{room}/Alice", mbody="psst", mtype="chat")
        pm.append(ElementTree.fromstring("<x xmlns='http://jabber.org/protocol/muc#user'/>"))  # noqa: S314
        pm.send()
        got = await desk.next_message()
        while got["body"] != "psst":
            got = await desk.next_message()
        out["pm_from"] = str(got["from"])
        out["pm_sid"] = _stanza_ids(got)
        out["no_received_copy"] = await _nothing(received)
        reply = desk.make_message(mto=f"{room}/Bob", mbody="hush", mtype="chat")
        reply.append(ElementTree.fromstring("<x xmlns='http://jabber.org/protocol/muc#user'/>"))  # noqa: S314
        reply.send()
        carbon = await asyncio.wait_for(sent.get(), 5)
        out["sent"] = (carbon["carbon_sent"]["body"], str(carbon["carbon_sent"]["to"]))
        archived, _ = await _archive(desk)
        out["archived"] = [b for _, b in archived]
        out["archived_ids"] = [i for i, _ in archived]
        for c in (desk, phone, bob):
            await c.close()
        return out

    out = run(scenario)
    assert out["pm_from"] == "sax@conference.localhost/Bob"
    assert out["no_received_copy"] is True  # XEP-0280 §6: sent by a room's occupant
    assert out["sent"] == ("hush", "sax@conference.localhost/Bob")
    assert out["archived"] == ["psst", "hush"]  # both, each once (alice has two resources)
    assert out["pm_sid"] == [("alice@localhost", out["archived_ids"][0])]
