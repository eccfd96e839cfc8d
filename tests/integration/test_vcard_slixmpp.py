"""XEP-0054 vCards, XEP-0049 private XML storage and XEP-0077 password change against a
real ``xmppd serve`` (internal accounts), with slixmpp's xep_0054, xep_0049 and xep_0077
plugins over real sockets, including the bad requests (each stores nothing)."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

import pytest
from slixmpp.exceptions import IqError

from tests.slix import AuthFailed, Client, login, run
from tests.xmppd_process import XmppdProcess

pytestmark = pytest.mark.integration

VCARD = "vcard-temp"
PRIVATE = "jabber:iq:private"
REGISTER = "jabber:iq:register"


def _xml(text: str) -> ElementTree.Element:
    return ElementTree.fromstring(text)  # noqa: S314 - the test's own literal


async def _iq(client: Client, kind: str, payload: str, to: str | None = None) -> Any:
    """Send an iq with ``payload``: the result stanza, or the error condition (a str)."""
    iq = client.make_iq_set() if kind == "set" else client.make_iq_get()
    if to is not None:
        iq["to"] = to
    iq.append(_xml(payload))
    try:
        return await iq.send(timeout=5)
    except IqError as exc:
        return str(exc.condition)


def _vcard_fields(iq: Any) -> dict[str, str]:
    card = iq.xml.find(f"{{{VCARD}}}vCard")
    assert card is not None
    return {child.tag.split("}")[1]: (child.text or "") for child in card}


def test_vcards_own_others_and_bad_input(xmppd_server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await login(xmppd_server, "alice@localhost/desk", plugins=["xep_0054"])
        bob = await login(xmppd_server, "bob@localhost/b", plugins=["xep_0054"])
        info = await alice.plugin["xep_0030"].get_info(jid="localhost")
        out["feature"] = VCARD in info["disco_info"]["features"]
        out["empty"] = _vcard_fields(await bob.plugin["xep_0054"].get_vcard("alice@localhost"))

        card = alice.plugin["xep_0054"].make_vcard()
        card["FN"] = "Alice Liddell"
        card["NICKNAME"] = "alice ✓"
        await alice.plugin["xep_0054"].publish_vcard(card)
        out["own"] = _vcard_fields(await alice.plugin["xep_0054"].get_vcard("alice@localhost"))
        out["others"] = _vcard_fields(await bob.plugin["xep_0054"].get_vcard("alice@localhost"))
        try:
            await bob.plugin["xep_0054"].get_vcard("carol@localhost")
            out["unknown"] = "answered"
        except IqError as exc:
            out["unknown"] = exc.condition

        # bob sets alice's vCard: forbidden, alice's stays as it was
        out["foreign"] = await _iq(
            bob, "set", f"<vCard xmlns='{VCARD}'><FN>Mallory</FN></vCard>", to="alice@localhost"
        )
        # a vCard over [vcard] max_size (64 KiB by default): not-acceptable, nothing stored
        big = "A" * 70_000
        out["big"] = await _iq(
            alice, "set", f"<vCard xmlns='{VCARD}'><PHOTO><BINVAL>{big}</BINVAL></PHOTO></vCard>"
        )
        out["after"] = _vcard_fields(await bob.plugin["xep_0054"].get_vcard("alice@localhost"))
        out["server"] = _vcard_fields(await alice.plugin["xep_0054"].get_vcard("localhost"))
        for client in (alice, bob):
            await client.close()
        return out

    out = run(scenario, timeout=60)
    assert out["feature"] is True
    assert out["empty"] == {}
    assert out["own"] == {"FN": "Alice Liddell", "NICKNAME": "alice ✓"}
    assert out["others"] == out["own"]
    assert out["unknown"] == "service-unavailable"
    assert out["foreign"] == "forbidden"
    assert out["big"] == "not-acceptable"
    assert out["after"] == out["own"]
    assert out["server"] == {}


def test_private_storage_rules(xmppd_server: XmppdProcess) -> None:
    bookmarks = (
        "<storage xmlns='storage:bookmarks'><conference jid='chat@conference.localhost'"
        " autojoin='true' name='Forum'><nick>alice</nick></conference></storage>"
    )

    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await login(xmppd_server, "alice@localhost/desk", plugins=["xep_0049"])
        phone = await login(xmppd_server, "alice@localhost/phone", plugins=["xep_0049"])
        bob = await login(xmppd_server, "bob@localhost/b", plugins=["xep_0049"])
        never = await _iq(alice, "get", f"<query xmlns='{PRIVATE}'><prefs xmlns='x:p'/></query>")
        out["never"] = [
            (c.tag, len(c), dict(c.attrib)) for c in never.xml.find(f"{{{PRIVATE}}}query")
        ]
        await alice.plugin["xep_0049"].store(_xml(bookmarks))
        got = await _iq(
            phone, "get", f"<query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'/></query>"
        )
        stored = got.xml.find(f"{{{PRIVATE}}}query/{{storage:bookmarks}}storage")
        out["conference"] = [(c.get("jid"), c.findtext("{storage:bookmarks}nick")) for c in stored]

        bad = {
            "reserved": f"<query xmlns='{PRIVATE}'><x xmlns='jabber:x:oob'/></query>",
            "vcard": f"<query xmlns='{PRIVATE}'><vCard xmlns='{VCARD}'/></query>",
            "no_namespace": f"<query xmlns='{PRIVATE}'><thing/></query>",
            "two": f"<query xmlns='{PRIVATE}'><a xmlns='x:a'/><b xmlns='x:b'/></query>",
            "none": f"<query xmlns='{PRIVATE}'/>",
            "big": f"<query xmlns='{PRIVATE}'><a xmlns='x:a'>{'z' * 70_000}</a></query>",
        }
        out["bad"] = {name: await _iq(alice, "set", xml) for name, xml in bad.items()}
        out["get_two"] = await _iq(
            alice, "get", f"<query xmlns='{PRIVATE}'><a xmlns='x:a'/><b xmlns='x:b'/></query>"
        )
        out["get_reserved"] = await _iq(
            alice, "get", f"<query xmlns='{PRIVATE}'><q xmlns='jabber:iq:roster'/></query>"
        )
        # nothing of the refused sets was kept
        after = await _iq(alice, "get", f"<query xmlns='{PRIVATE}'><a xmlns='x:a'/></query>")
        out["a_after"] = len(after.xml.find(f"{{{PRIVATE}}}query/{{x:a}}a"))
        # someone else's data, either way: forbidden
        steal = f"<query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'/></query>"
        out["bob_get"] = await _iq(bob, "get", steal, to="alice@localhost")
        out["bob_set"] = await _iq(bob, "set", bookmarks.join(
            (f"<query xmlns='{PRIVATE}'>", "</query>")), to="alice@localhost")  # fmt: skip
        out["to_server"] = await _iq(alice, "get", steal, to="localhost")
        mine = await _iq(bob, "get", steal)
        out["bob_own"] = len(mine.xml.find(f"{{{PRIVATE}}}query/{{storage:bookmarks}}storage"))
        for client in (alice, phone, bob):
            await client.close()
        return out

    out = run(scenario, timeout=60)
    assert out["never"] == [("{x:p}prefs", 0, {})]
    assert out["conference"] == [("chat@conference.localhost", "alice")]
    assert out["bad"] == {
        "reserved": "not-acceptable",
        "vcard": "not-acceptable",
        "no_namespace": "not-acceptable",
        "two": "not-acceptable",
        "none": "not-acceptable",
        "big": "not-acceptable",
    }
    assert out["get_two"] == "bad-request"
    assert out["get_reserved"] == "not-acceptable"
    assert out["a_after"] == 0
    assert out["bob_get"] == out["bob_set"] == out["to_server"] == "forbidden"
    assert out["bob_own"] == 0


def test_password_change_internal(xmppd_server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await login(xmppd_server, "alice@localhost/desk", plugins=["xep_0077"])
        info = await alice.plugin["xep_0030"].get_info(jid="localhost")
        out["feature"] = REGISTER in info["disco_info"]["features"]
        out["stream_feature"] = "register" in alice.features
        reg = await alice.plugin["xep_0077"].get_registration()
        out["registered"] = reg["register"]["registered"]
        # bad input first: another user's name, an empty password, <remove/>
        out["other"] = await _iq(
            alice,
            "set",
            f"<query xmlns='{REGISTER}'><username>bob</username><password>x</password></query>",
        )
        out["empty"] = await _iq(
            alice,
            "set",
            f"<query xmlns='{REGISTER}'><username>alice</username><password/></query>",
        )
        out["remove"] = await _iq(alice, "set", f"<query xmlns='{REGISTER}'><remove/></query>")
        await alice.plugin["xep_0077"].change_password("n3w pässword", jid="localhost")
        await alice.close()

        fresh = await login(xmppd_server, "alice@localhost/new", "n3w pässword")
        out["new_works"] = str(fresh.boundjid)
        await fresh.close()
        for mechanism in ("PLAIN", "SCRAM-SHA-256"):
            try:
                old = await login(xmppd_server, "alice@localhost/old", mechanism=mechanism)
                out[f"old_{mechanism}"] = "logged in"
                await old.close()
            except AuthFailed:
                out[f"old_{mechanism}"] = "refused"
        bob = await login(xmppd_server, "bob@localhost/b")  # untouched by alice's attempt
        out["bob"] = str(bob.boundjid)
        await bob.close()
        return out

    out = run(scenario, timeout=60)
    assert out["feature"] is True
    assert out["stream_feature"] is False  # in-band registration stays off
    assert out["registered"] is True
    assert out["other"] == "not-allowed"
    assert out["empty"] == "bad-request"
    assert out["remove"] == "not-allowed"
    assert out["new_works"] == "alice@localhost/new"
    assert out["old_PLAIN"] == out["old_SCRAM-SHA-256"] == "refused"
    assert out["bob"] == "bob@localhost/b"
    assert "n3w pässword" not in xmppd_server.log()
