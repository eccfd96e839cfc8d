"""Fill a real ejabberd the way a forum's users do, through its own interfaces only: in-band
registration, roster sets and presence subscriptions, rooms created and configured by an
owner, affiliations, nicks registered in-band, room and one-to-one chat, offline messages,
vCards and private XML, all by slixmpp clients.

:func:`populate` returns what it made (:class:`Population`), including the ids ejabberd's
archive gave the messages (read back with MAM), so the import tests can compare.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from slixmpp.xmlstream import ET

from bench.loadgen import register
from tests.ejabberd_fixture import DOMAIN, MUC_DOMAIN, Ejabberd
from tests.slix import Client, login

PASSWORDS = {  # loopback-only throwaway accounts
    "alice": "alice-pw-1",
    "bob": "bob-pw-2",
    "carol": "carol pw 3",
    "dave": "dave-pw-4",
    "erin": "erin-pw-5",
}
LOBBY = f"lobby@{MUC_DOMAIN}"
STAFF = f"staff@{MUC_DOMAIN}"
LOBBY_MESSAGES = 240  # from three nicks
STAFF_MESSAGES = 12
STAFF_PASSWORD = "staff-only-2023"
PLUGINS = ["xep_0045", "xep_0054", "xep_0049", "xep_0313", "xep_0059", "xep_0077", "xep_0004"]


def jid(user: str) -> str:
    return f"{user}@{DOMAIN}"


@dataclass
class Population:
    """What ejabberd was given; JIDs in the ``forum.test`` domain."""

    passwords: dict[str, str] = field(default_factory=lambda: dict(PASSWORDS))
    # owner -> contact -> {name, subscription, ask, groups}
    rosters: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    pending_in: dict[str, list[str]] = field(default_factory=dict)  # owner -> requesters
    offline: dict[str, list[str]] = field(default_factory=dict)  # owner -> bodies, in order
    vcards: dict[str, dict[str, str]] = field(default_factory=dict)  # owner -> element -> text
    private: dict[str, str] = field(default_factory=dict)  # "owner namespace" -> xml
    rooms: dict[str, dict[str, Any]] = field(default_factory=dict)  # room -> configuration
    affiliations: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    nicks: dict[str, str] = field(default_factory=dict)  # owner -> registered nick (service)
    # room -> [(stanza id, nick, body)], oldest first, as ejabberd's MAM returned them
    room_archive: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    # owner -> [(stanza id, body)], oldest first
    account_archive: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


async def send_iq(client: Client, to: str | None, xml: str, itype: str = "set") -> Any:
    """Send ``xml`` as the payload of an IQ and return the result (IqError on an error)."""
    iq = client.make_iq_set() if itype == "set" else client.make_iq_get()
    if to:
        iq["to"] = to
    iq.append(ET.fromstring(xml))
    return await iq.send(timeout=15)


async def _login(server: Ejabberd, user: str) -> Client:
    client = await login(server, f"{jid(user)}/pop", PASSWORDS[user], plugins=PLUGINS)  # type: ignore[arg-type]
    # None: slixmpp neither accepts nor refuses (False would send "unsubscribed" at once);
    # every answer below is explicit
    client.roster.auto_authorize = None
    client.roster.auto_subscribe = False
    return client


async def _register_nick(client: Client, nick: str) -> None:
    """XEP-0045 §7.10 on ejabberd's MUC service: get the form, submit it with the nick."""
    form = (
        "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field>"
        f"<field var='muc#register_roomnick'><value>{nick}</value></field></x></query>"
    )
    await send_iq(client, MUC_DOMAIN, "<query xmlns='jabber:iq:register'/>", "get")
    await send_iq(client, MUC_DOMAIN, form)


async def _configure(client: Client, room: str, values: dict[str, str]) -> None:
    fields = "".join(
        f"<field var='{var}'><value>{value}</value></field>" for var, value in values.items()
    )
    await send_iq(
        client,
        room,
        "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' "
        "type='submit'><field var='FORM_TYPE'>"
        "<value>http://jabber.org/protocol/muc#roomconfig</value></field>"
        f"{fields}</x></query>",
    )


async def _wait_bodies(client: Client, room: str, count: int, timeout: float = 60) -> None:
    """Wait until ``count`` groupchat messages with a body from ``room`` arrived."""
    seen = 0
    while seen < count:
        msg = await client.next_message(timeout=timeout)
        if msg["type"] == "groupchat" and msg["from"].bare == room and msg["body"]:
            seen += 1


async def _mam(client: Client, archive: str | None) -> list[Any]:
    mam = client.plugin["xep_0313"]
    return [m async for m in mam.iterate(jid=archive, rsm={"max": 100}, total=1000)]


def _room_rows(result: Any) -> tuple[str, str, str]:
    stanza = result["mam_result"]["forwarded"]["stanza"]
    return (result["mam_result"]["id"], stanza["from"].resource, stanza["body"])


async def populate(server: Ejabberd) -> Population:
    pop = Population()
    users = [(u, p) for u, p in PASSWORDS.items()]
    result = await register.register_many("127.0.0.1", server.c2s_port, DOMAIN, users, 2)
    if result["created"] != len(users):
        raise RuntimeError(f"in-band registration: {result}")

    # dave registers his nick and a vCard, then stays offline for good
    dave = await _login(server, "dave")
    await _register_nick(dave, "Dave")
    pop.nicks[jid("dave")] = "Dave"
    await dave.close()

    alice, bob, carol, erin = [await _login(server, u) for u in ("alice", "bob", "carol", "erin")]
    clients = [alice, bob, carol, erin]
    try:
        await _rosters(pop, alice, bob, carol, erin)
        await _personal(pop, alice, bob)
        await _rooms(pop, alice, bob, carol)
        await _chat(pop, alice, bob)
        pop.room_archive[LOBBY] = [_room_rows(r) for r in await _mam(alice, LOBBY)]
        pop.room_archive[STAFF] = [_room_rows(r) for r in await _mam(bob, STAFF)]
        for user, client in (("alice", alice), ("bob", bob)):
            pop.account_archive[jid(user)] = [
                (r["mam_result"]["id"], r["mam_result"]["forwarded"]["stanza"]["body"])
                for r in await _mam(client, None)
            ]
    finally:
        for client in clients:
            await client.close()
    return pop


async def _rosters(
    pop: Population, alice: Client, bob: Client, carol: Client, erin: Client
) -> None:
    a, b, c, d, e = (jid(u) for u in ("alice", "bob", "carol", "dave", "erin"))
    # alice <-> bob: both, with a name and two groups on alice's side
    await alice.update_roster(b, name="Bobby", groups=["Friends", "Work"])
    await bob.update_roster(a, name="Alice L.", groups=["Forum"])
    for x, y in ((alice, b), (bob, a)):
        x.send_presence(pto=y, ptype="subscribe")
    for x, y in ((bob, a), (alice, b)):
        await x.next_presence(match=lambda p, y=y: p["type"] == "subscribe" and p["from"].bare == y)
        x.send_presence(pto=y, ptype="subscribed")
    # alice -> carol: carol approves but does not ask back (alice "to", carol "from")
    await alice.update_roster(c, name="Carol", groups=["Work"])
    alice.send_presence(pto=c, ptype="subscribe")
    await carol.next_presence(match=lambda p: p["type"] == "subscribe")
    carol.send_presence(pto=a, ptype="subscribed")
    # alice -> dave while dave is offline: pending out for alice, pending in for dave
    alice.send_presence(pto=d, ptype="subscribe", pstatus="alice from the forum")
    # erin -> alice: alice never answers (pending in for alice, ask out for erin)
    erin.send_presence(pto=a, ptype="subscribe", pstatus="please add me")
    await alice.next_presence(match=lambda p: p["type"] == "subscribe" and p["from"].bare == e)
    # a contact on another server, no subscription at all
    await alice.update_roster("news@feeds.example", name="News", groups=["Feeds"])

    def item(name: str, sub: str, ask: str = "", groups: tuple[str, ...] = ()) -> dict[str, Any]:
        return {"name": name, "subscription": sub, "ask": ask, "groups": sorted(groups)}

    pop.rosters = {
        a: {
            b: item("Bobby", "both", groups=("Friends", "Work")),
            c: item("Carol", "to", groups=("Work",)),
            d: item("", "none", "subscribe"),
            "news@feeds.example": item("News", "none", groups=("Feeds",)),
        },
        b: {a: item("Alice L.", "both", groups=("Forum",))},
        c: {a: item("", "from")},
        e: {a: item("", "none", "subscribe")},
    }
    pop.pending_in = {a: [e], d: [a]}
    owners = {a: alice, b: bob, c: carol, e: erin}
    await _settled({owners[o]: items for o, items in pop.rosters.items()})


async def _settled(expected: dict[Client, dict[str, dict[str, Any]]], timeout: float = 20) -> None:
    """Until ejabberd's own rosters show the subscription states made above (the last
    ``subscribed`` may still be on its way when the population moves on)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        seen = {}
        for client, items in expected.items():
            await client.get_roster()
            roster = client.client_roster
            for contact, want in items.items():
                got = (roster[contact]["subscription"], roster[contact]["pending_out"])
                seen[(str(client.boundjid.bare), contact)] = (
                    got,
                    (want["subscription"], bool(want["ask"])),
                )
        wrong = {k: v for k, v in seen.items() if v[0] != v[1]}
        if not wrong:
            return
        if loop.time() > deadline:
            raise RuntimeError(f"ejabberd's rosters did not settle: {wrong}")
        await asyncio.sleep(0.2)


async def _personal(pop: Population, alice: Client, bob: Client) -> None:
    cards = {
        "alice": {"FN": "Alice Liddell", "NICKNAME": "alice", "URL": "https://forum.test/u/alice",
                  "DESC": "Runs the forum's chat"},
        "bob": {"FN": "Bob Builder", "NICKNAME": "bob"},
    }  # fmt: skip
    for client, user in ((alice, "alice"), (bob, "bob")):
        inner = "".join(f"<{k}>{v}</{k}>" for k, v in cards[user].items())
        await send_iq(client, None, f"<vCard xmlns='vcard-temp'>{inner}</vCard>")
        pop.vcards[jid(user)] = cards[user]
    private = {
        "urn:example:forum:prefs": "<prefs xmlns='urn:example:forum:prefs'><theme>dark</theme>"
        "<sound>off</sound></prefs>",
        "urn:example:forum:notes": "<notes xmlns='urn:example:forum:notes'>"
        "<note about='bob'>met at the meetup</note></notes>",
    }
    for ns, xml in private.items():
        await send_iq(alice, None, f"<query xmlns='jabber:iq:private'>{xml}</query>")
        pop.private[f"{jid('alice')} {ns}"] = xml


async def _rooms(pop: Population, alice: Client, bob: Client, carol: Client) -> None:
    muc_a, muc_b, muc_c = (c.plugin["xep_0045"] for c in (alice, bob, carol))
    await muc_a.join_muc_wait(LOBBY, "Alice", maxstanzas=0, timeout=15)
    lobby = {
        "muc#roomconfig_roomname": "The Lobby",
        "muc#roomconfig_roomdesc": "Where the forum chats",
        "muc#roomconfig_persistentroom": "1",
        "muc#roomconfig_publicroom": "1",
        "muc#roomconfig_membersonly": "0",
        "muc#roomconfig_moderatedroom": "0",
        "muc#roomconfig_whois": "anyone",
        "muc#roomconfig_passwordprotectedroom": "0",
        "muc#roomconfig_changesubject": "0",
        "mam": "1",
    }
    await _configure(alice, LOBBY, lobby)
    await muc_b.join_muc_wait(STAFF, "Bob", maxstanzas=0, timeout=15)
    staff = {
        "muc#roomconfig_roomname": "Staff room",
        "muc#roomconfig_roomdesc": "Moderators only",
        "muc#roomconfig_persistentroom": "1",
        "muc#roomconfig_publicroom": "0",
        "muc#roomconfig_membersonly": "1",
        "muc#roomconfig_moderatedroom": "1",
        "muc#roomconfig_whois": "moderators",
        "muc#roomconfig_passwordprotectedroom": "1",
        "muc#roomconfig_roomsecret": STAFF_PASSWORD,
        "mam": "1",
    }
    await _configure(bob, STAFF, staff)
    pop.rooms = {
        LOBBY: {"title": "The Lobby", "description": "Where the forum chats", "public": True,
                "persistent": True, "members_only": False, "moderated": False,
                "password": None, "whois": "anyone",
                "subject": "Welcome to the lobby", "subject_nick": "Alice"},
        STAFF: {"title": "Staff room", "description": "Moderators only", "public": False,
                "persistent": True, "members_only": True, "moderated": True,
                "password": STAFF_PASSWORD, "whois": "moderators",
                "subject": "Staff business", "subject_nick": "Bob"},
    }  # fmt: skip
    affs = {
        LOBBY: {jid("bob"): ("admin", "co-host"), jid("carol"): ("member", "regular"),
                jid("erin"): ("outcast", "spam links")},
        STAFF: {jid("alice"): ("admin", "moderator"), jid("dave"): ("member", "new moderator"),
                "troll@elsewhere.example": ("outcast", "abuse")},
    }  # fmt: skip
    for room, client in ((LOBBY, muc_a), (STAFF, muc_b)):
        for who, (aff, reason) in affs[room].items():
            await client.set_affiliation(room, aff, jid=who, reason=reason)
    pop.affiliations = {
        LOBBY: {jid("alice"): ("owner", ""), **affs[LOBBY]},
        STAFF: {jid("bob"): ("owner", ""), **affs[STAFF]},
    }
    for client, user, nick in ((alice, "alice", "Alice"), (bob, "bob", "Bob"),
                               (carol, "carol", "Carol")):  # fmt: skip
        await _register_nick(client, nick)
        pop.nicks[jid(user)] = nick
    muc_a.set_subject(LOBBY, "Welcome to the lobby")
    muc_b.set_subject(STAFF, "Staff business")
    await muc_b.join_muc_wait(LOBBY, "Bob", maxstanzas=0, timeout=15)
    await muc_c.join_muc_wait(LOBBY, "Carol", maxstanzas=0, timeout=15)
    await muc_a.join_muc_wait(STAFF, "Alice", password=STAFF_PASSWORD, maxstanzas=0, timeout=15)
    await asyncio.sleep(0.3)
    for client in (alice, bob, carol):  # forget joins, subjects, presences so far
        while not client.messages.empty():
            client.messages.get_nowait()
    speakers = (alice, bob, carol)
    for i in range(LOBBY_MESSAGES):
        speakers[i % 3].send_message(mto=LOBBY, mbody=f"lobby line {i:03d}", mtype="groupchat")
        if i % 20 == 19:
            await asyncio.sleep(0.05)
    for i in range(STAFF_MESSAGES):
        (bob, alice)[i % 2].send_message(mto=STAFF, mbody=f"staff line {i:02d}", mtype="groupchat")
    await _wait_bodies(carol, LOBBY, LOBBY_MESSAGES)
    await _wait_bodies(bob, STAFF, STAFF_MESSAGES)


async def _chat(pop: Population, alice: Client, bob: Client) -> None:
    for client in (alice, bob):
        while not client.messages.empty():
            client.messages.get_nowait()
    lines = [(alice, bob, "hi bob"), (bob, alice, "hi alice"), (alice, bob, "see you in the lobby")]
    for sender, receiver, body in lines:
        sender.send_message(mto=receiver.boundjid.bare, mbody=body, mtype="chat")
        while (await receiver.next_message(timeout=10))["body"] != body:
            pass
    dave = jid("dave")
    pop.offline[dave] = []
    for i, sender in enumerate((alice, bob, alice)):
        body = f"offline note {i} for dave"
        sender.send_message(mto=dave, mbody=body, mtype="chat")
        pop.offline[dave].append(body)
        await asyncio.sleep(0.2)  # two connections: keep the spool in this order
    await asyncio.sleep(0.5)
