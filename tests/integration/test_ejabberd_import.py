"""Moving a real ejabberd 23.01 site to xmppd, end to end.

A real ejabberd (Debian's 23.01, tests/ejabberd_fixture.py) is filled by slixmpp clients
through its own interfaces (tests/ejabberd_population.py), once with SQL storage on
MariaDB (SCRAM-SHA-1 stored, ejabberd's default hash) and once with the default Mnesia
storage (plain passwords, ejabberd 23.01's default format). What a site moving out has is
then imported with the real CLI, ``xmppd import ejabberd SOURCE --map-domain
forum.test=localhost``: the SQL database itself, ``ejabberdctl dump FILE`` and
``ejabberdctl export_piefxis DIR`` (XEP-0227: accounts only, ejabberd exports no rooms).
A real xmppd then serves the result to slixmpp clients, which must find everything the
population made: old passwords, rosters, pending requests, offline messages, vCards,
private XML, rooms with their configuration and affiliations, registered nicks, the room
history and both archives with ejabberd's archive ids as stanza-ids, in order.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

import pytest
import sqlalchemy as sa

from tests.ejabberd_fixture import DOMAIN, Ejabberd, require_ejabberd
from tests.ejabberd_population import (
    LOBBY,
    STAFF,
    STAFF_PASSWORD,
    Population,
    populate,
    send_iq,
)
from tests.slix import AuthFailed, Client, login, run
from tests.xmppd_process import XmppdProcess, make_server
from xmppd.storage import Database

pytestmark = pytest.mark.integration

NEW = "localhost"
SOURCES = ("sql", "dump", "xep0227")
WITH_ROOMS = ("sql", "dump")  # ejabberd's export_piefxis has accounts only
SID = "{urn:xmpp:sid:0}stanza-id"
USERS = ("alice", "bob", "carol", "erin", "dave")


def new(jid: str) -> str:
    """A ``forum.test`` JID (or subdomain) as xmppd knows it after ``--map-domain``."""
    return re.sub(rf"{re.escape(DOMAIN)}(?=$|/)", NEW, jid)


@dataclass
class Site:
    """A populated ejabberd, stopped, and the source its data is imported from."""

    source: str  # what ``xmppd import ejabberd`` gets
    extra: tuple[str, ...]  # further CLI arguments
    pop: Population
    password_format: str


@pytest.fixture(scope="module")
def sql_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require_ejabberd()
    server = Ejabberd(tmp_path_factory.mktemp("ejabberd-sql"), storage="sql",
                      password_format="scram", scram_hash="sha")  # fmt: skip
    try:
        server.start()
        pop = run(lambda: populate(server), 180)
        server.stop()
        url = (f"mysql://{server.database}:{server.sql_password}@127.0.0.1:3306/"
               f"{server.database}")  # fmt: skip
        # no --host: the old domain is the one --map-domain renames into the served one
        yield Site(url, (), pop, "scram-sha1")
    finally:
        server.stop()
        server.drop_database()


@pytest.fixture(scope="module")
def mnesia_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Site]]:
    require_ejabberd()
    base = tmp_path_factory.mktemp("ejabberd-mnesia")
    server = Ejabberd(base / "node", storage="mnesia", password_format="plain")
    try:
        server.start()
        pop = run(lambda: populate(server), 180)
        dump = server.dump(base / "ejabberd.dump")
        files = server.export_piefxis(base / "piefxis")
    finally:
        server.stop()
    index = [f for f in files if "_" not in f.name]  # the server-data file with the includes
    assert dump.stat().st_size > 0 and len(index) == 1, files
    yield {
        "dump": Site(str(dump), (), pop, "plain"),
        "xep0227": Site(str(index[0]), (), pop, "plain"),
    }


def _site(request: pytest.FixtureRequest, which: str) -> Site:
    if which == "sql":
        return request.getfixturevalue("sql_site")
    return request.getfixturevalue("mnesia_site")[which]


def xmppd_import(server: XmppdProcess, site: Site, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "xmppd", "import", "ejabberd", site.source,
            "--config", str(server.config_path), "--map-domain", f"{DOMAIN}={NEW}",
            *site.extra, *extra]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def snapshot(server: XmppdProcess) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but alembic's), sorted: what "changes nothing" compares."""
    db: Database = server.database()
    try:
        with db.connection() as conn:
            tables = sa.inspect(conn).get_table_names()
            return {
                t: sorted((tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t}"))), key=repr)
                for t in tables
                if t != "alembic_version"
            }
    finally:
        db.dispose()


@dataclass
class Imported:
    which: str
    site: Site
    server: XmppdProcess
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    before: dict[str, list[tuple[Any, ...]]]
    after: dict[str, list[tuple[Any, ...]]]


@pytest.fixture(scope="module")
def imported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Imported]:
    """A fresh xmppd, the site imported into it twice, then started (the source is the
    test's indirect parameter: one server per source for the whole module)."""
    site = _site(request, request.param)
    server = make_server(tmp_path_factory.mktemp(f"xmppd-{request.param}"))
    first = xmppd_import(server, site)
    assert first.returncode == 0, first.stdout + first.stderr
    before = snapshot(server)
    second = xmppd_import(server, site)
    assert second.returncode == 0, second.stdout + second.stderr
    after = snapshot(server)
    server.start()
    try:
        yield Imported(request.param, site, server, first, second, before, after)
    finally:
        server.stop()


every_source = pytest.mark.parametrize("imported", SOURCES, indirect=True)
room_sources = pytest.mark.parametrize("imported", WITH_ROOMS, indirect=True)


# -- the import itself -----------------------------------------------------------------------


@every_source
def test_importing_twice_changes_nothing(imported: Imported) -> None:
    assert imported.before == imported.after
    assert sum(map(len, imported.before.values())) > 0


@every_source
def test_no_password_is_printed(imported: Imported) -> None:
    out = "".join(p.stdout + p.stderr for p in (imported.first, imported.second))
    secrets = [*imported.site.pop.passwords.values(), STAFF_PASSWORD]
    dsn_password = urlsplit(imported.site.source).password  # the SQL source's
    secrets += [dsn_password] if dsn_password else []
    assert [s for s in secrets if s in out] == []


def expected_counts(pop: Population, which: str) -> dict[str, int]:
    """What ejabberd holds, per kind, from what the population made."""
    counts = {
        "accounts": len(pop.passwords),
        "rosters": sum(map(len, pop.rosters.values())),
        "pending subscriptions": sum(map(len, pop.pending_in.values())),
        "offline messages": sum(map(len, pop.offline.values())),
        "vcards": len(pop.vcards),
        "private storage": len(pop.private),
    }
    if which in WITH_ROOMS:
        counts |= {
            "rooms": len(pop.rooms),
            "affiliations": sum(map(len, pop.affiliations.values())),
            "registered nicks": len(pop.nicks),
            # the subject changes are archived too (no body)
            "room archive": sum(map(len, pop.room_archive.values())),
            # mod_mam archives a message for its offline recipient too
            "account archive": sum(map(len, pop.account_archive.values()))
            + sum(map(len, pop.offline.values())),
        }
    return counts


@pytest.mark.parametrize("which", SOURCES)
def test_dry_run_counts_what_ejabberd_holds(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    site = _site(request, which)
    server = make_server(tmp_path)
    done = xmppd_import(server, site, "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    line = r"^\s+([a-z ]+?)\s+read\s+(\d+)\s+would offer\s+(\d+).*left out\s+(\d+)"
    rows = {m[1]: (int(m[2]), int(m[3]), int(m[4])) for m in re.finditer(line, done.stdout, re.M)}
    want = expected_counts(site.pop, which)
    offered = {k: rows.get(k, (0, 0, 0))[1] for k in want}
    if "room archive" in want:
        # the subject changes ejabberd archived (no body) are read and left out: xmppd's
        # archive holds messages only (a subject in join history would end the history)
        subjects = sum(1 for rs in site.pop.room_archive.values() for r in rs if not r[2])
        assert subjects == len(site.pop.rooms), site.pop.room_archive
        assert rows["room archive"][0] == want["room archive"], done.stdout
        assert rows["room archive"][2] == subjects, done.stdout
        want["room archive"] -= subjects
    assert offered == want, done.stdout
    # what is listed is only what xmppd has no place for, nothing unreadable
    problems = re.findall(r"^  \[.*$", done.stdout, re.M)
    assert all(re.search(r"not carried over|not imported", p) for p in problems), done.stdout
    assert not any(snapshot(server).values())  # a dry run writes nothing


# -- what clients find -------------------------------------------------------------------------


async def _login(imp: Imported, user: str, **kw: Any) -> Client:
    """``user`` (a localpart) logged in to xmppd with the password ejabberd had."""
    plugins = ["xep_0045", "xep_0313", "xep_0059", "xep_0004"]
    password = imp.site.pop.passwords[user]
    client = await login(imp.server, f"{user}@{NEW}/t", password, plugins=plugins, **kw)
    client.roster.auto_authorize = None  # look, do not answer: the next test sees the same
    client.roster.auto_subscribe = False
    return client


@every_source
def test_old_passwords_log_in(imported: Imported) -> None:
    mechanisms = ["PLAIN", "SCRAM-SHA-1"]
    if imported.site.password_format == "plain":
        mechanisms.append("SCRAM-SHA-256")

    async def attempt(user: str, password: str, mech: str | None) -> str:
        try:
            c = await login(imported.server, f"{user}@{NEW}/t", password, mechanism=mech,
                            get_roster=False, send_presence=False)  # fmt: skip
        except AuthFailed:
            return "refused"
        await c.close()
        return "ok"

    async def scenario() -> dict[Any, str]:
        tries = [(u, p, m) for u, p in imported.site.pop.passwords.items() for m in mechanisms]
        tries.append(("alice", "wrong password", None))
        results = [await attempt(*t) for t in tries]  # one at a time, as people do
        return {(u, m) if p != "wrong password" else "wrong": r
                for (u, p, m), r in zip(tries, results, strict=True)}  # fmt: skip

    got = run(scenario, 90)
    want: dict[Any, str] = {(u, m): "ok" for u in imported.site.pop.passwords for m in mechanisms}
    assert got == {**want, "wrong": "refused"}


def _roster_of(iq: Any) -> dict[str, dict[str, Any]]:
    items = iq.xml.find("{jabber:iq:roster}query")
    out = {}
    for item in items.findall("{jabber:iq:roster}item"):
        out[item.get("jid")] = {
            "name": item.get("name", ""),
            "subscription": item.get("subscription", "none"),
            "ask": item.get("ask", ""),
            "groups": sorted(g.text or "" for g in item.findall("{jabber:iq:roster}group")),
        }
    return out


@every_source
def test_rosters_and_pending_requests(imported: Imported) -> None:
    pop = imported.site.pop

    async def scenario() -> dict[str, Any]:
        rosters, pending = {}, {}

        async def look(user: str) -> None:
            c = await _login(imported, user, get_roster=False, send_presence=False)
            got = await send_iq(c, None, "<query xmlns='jabber:iq:roster'/>", "get")
            rosters[f"{user}@{NEW}"] = _roster_of(got)
            if user != "dave":  # his initial presence would flush his offline messages
                pending[f"{user}@{NEW}"] = await _requests_after_presence(c)
            await c.close()

        await asyncio.gather(*(look(u) for u in USERS))
        return {"rosters": rosters, "pending": pending}

    got = run(scenario, 90)
    want_rosters = {
        f"{u}@{NEW}": {new(j): dict(v) for j, v in pop.rosters.get(f"{u}@{DOMAIN}", {}).items()}
        for u in USERS
    }
    assert got["rosters"] == want_rosters
    want_pending = {f"{u}@{NEW}": [] for u in USERS if u != "dave"}
    want_pending[f"alice@{NEW}"] = [(f"erin@{NEW}", "please add me")]
    assert pop.pending_in[f"alice@{DOMAIN}"] == [f"erin@{DOMAIN}"]
    assert got["pending"] == want_pending


async def _requests_after_presence(client: Client) -> list[tuple[str, str]]:
    """The subscription requests (sender, status) delivered after the initial presence
    (RFC 6121 §3.1.3: pending ones are redelivered then)."""
    client.send_presence()
    asks = []
    while True:
        try:
            p = await client.next_presence(match=lambda p: p["type"] == "subscribe", timeout=1.5)
        except TimeoutError:
            return sorted(asks)
        asks.append((p["from"].bare, p["status"]))


@every_source
def test_offline_messages_and_requests_arrive(imported: Imported) -> None:
    """dave was offline all along: three messages and alice's request wait for him."""

    async def scenario() -> dict[str, Any]:
        dave = await _login(imported, "dave", send_presence=False)
        got = []
        try:
            asks = await _requests_after_presence(dave)
            for _ in range(3):
                m = await dave.next_message(timeout=10)
                delay = m.xml.find("{urn:xmpp:delay}delay")
                got.append((m["from"].bare, m["body"], "" if delay is None else delay.get("stamp")))
        finally:
            await dave.close()
        return {"messages": got, "requests": asks}

    pop = imported.site.pop
    bodies = pop.offline[f"dave@{DOMAIN}"]
    senders = [f"alice@{NEW}", f"bob@{NEW}", f"alice@{NEW}"]
    got = run(scenario, 60)
    assert [m[:2] for m in got["messages"]] == list(zip(senders, bodies, strict=True))
    stamps = [m[2] for m in got["messages"]]
    assert all(stamps) and stamps == sorted(stamps)  # the old <delay/>s, in order
    assert pop.pending_in[f"dave@{DOMAIN}"] == [f"alice@{DOMAIN}"]
    assert got["requests"] == [(f"alice@{NEW}", "alice from the forum")]


@every_source
def test_vcards_and_private_xml(imported: Imported) -> None:
    pop = imported.site.pop

    async def scenario() -> dict[str, Any]:
        bob = await _login(imported, "bob")
        alice = await _login(imported, "alice")
        try:
            cards = {}
            for user in ("alice", "bob"):
                iq = await send_iq(bob, f"{user}@{NEW}", "<vCard xmlns='vcard-temp'/>", "get")
                card = iq.xml.find("{vcard-temp}vCard")
                cards[user] = {e.tag.split("}")[-1]: e.text for e in card}
            private = {}
            for key in pop.private:
                ns = key.split(" ")[1]
                name = re.match(r"<(\w+)", pop.private[key])[1]  # type: ignore[index]
                query = f"<query xmlns='jabber:iq:private'><{name} xmlns='{ns}'/></query>"
                iq = await send_iq(alice, None, query, "get")
                stored = iq.xml.find("{jabber:iq:private}query")[0]
                text = ET.tostring(stored, encoding="unicode")
                private[key] = ET.canonicalize(text, rewrite_prefixes=True)
        finally:
            await bob.close()
            await alice.close()
        return {"cards": cards, "private": private}

    got = run(scenario, 60)
    assert got["cards"] == {u.split("@")[0]: card for u, card in pop.vcards.items()}
    for key, xml in pop.private.items():
        assert got["private"][key] == ET.canonicalize(xml, rewrite_prefixes=True)


# -- rooms -----------------------------------------------------------------------------------


@room_sources
def test_rooms_keep_their_configuration_and_subject(imported: Imported) -> None:
    pop = imported.site.pop

    async def scenario() -> dict[str, Any]:
        alice = await _login(imported, "alice")
        bob = await _login(imported, "bob")
        out: dict[str, Any] = {}
        try:
            for room, owner, nick in ((LOBBY, alice, "Alice"), (STAFF, bob, "Bob")):
                info = await owner.plugin["xep_0030"].get_info(jid=new(room), timeout=10)
                features = set(info["disco_info"]["features"])
                form = info["disco_info"].xml.find("{jabber:x:data}x")
                fields = {
                    f.get("var"): [v.text or "" for v in f.findall("{jabber:x:data}value")]
                    for f in (form if form is not None else [])
                }
                identity = [i[3] for i in info["disco_info"]["identities"]]
                config = await send_iq(
                    owner, new(room), "<query xmlns='http://jabber.org/protocol/muc#owner'/>", "get"
                )
                cfg = {
                    f.get("var"): [v.text or "" for v in f.findall("{jabber:x:data}value")]
                    for f in config.xml.iter("{jabber:x:data}field")
                }
                result = await owner.plugin["xep_0045"].join_muc_wait(
                    new(room), nick, password=STAFF_PASSWORD if room == STAFF else None,
                    maxstanzas=0, timeout=15,
                )  # fmt: skip
                subject = result[1]
                out[room] = {
                    "features": features,
                    "title": identity,
                    "description": fields.get("muc#roominfo_description"),
                    "secret": cfg.get("muc#roomconfig_roomsecret"),
                    "subject": (subject["subject"], subject["from"].resource) if subject else None,
                }
        finally:
            await alice.close()
            await bob.close()
        return out

    got = run(scenario, 60)
    for room, want in pop.rooms.items():
        have = got[room]
        flags = {
            "muc_public" if want["public"] else "muc_hidden",
            "muc_persistent",
            "muc_membersonly" if want["members_only"] else "muc_open",
            "muc_moderated" if want["moderated"] else "muc_unmoderated",
            "muc_passwordprotected" if want["password"] else "muc_unsecured",
            "muc_nonanonymous" if want["whois"] == "anyone" else "muc_semianonymous",
        }
        assert flags <= have["features"], (room, have["features"])
        assert have["title"] == [want["title"]]
        assert have["description"] == [want["description"]]
        if want["password"]:
            assert have["secret"] == [want["password"]]
        assert have["subject"] == (want["subject"], want["subject_nick"])


@room_sources
def test_affiliations_with_reasons(imported: Imported) -> None:
    pop = imported.site.pop

    async def scenario() -> dict[str, dict[str, tuple[str, str]]]:
        alice = await _login(imported, "alice")
        bob = await _login(imported, "bob")
        out: dict[str, dict[str, tuple[str, str]]] = {}
        try:
            for room, owner in ((LOBBY, alice), (STAFF, bob)):
                out[room] = {}
                for aff in ("owner", "admin", "member", "outcast"):
                    iq = await send_iq(owner, new(room),
                                       "<query xmlns='http://jabber.org/protocol/muc#admin'>"
                                       f"<item affiliation='{aff}'/></query>", "get")  # fmt: skip
                    for item in iq.xml.iter("{http://jabber.org/protocol/muc#admin}item"):
                        reason = item.findtext("{http://jabber.org/protocol/muc#admin}reason")
                        out[room][item.get("jid")] = (item.get("affiliation"), reason or "")
        finally:
            await alice.close()
            await bob.close()
        return out

    want = {
        room: {new(j): tuple(v) for j, v in affs.items()} for room, affs in pop.affiliations.items()
    }
    assert run(scenario, 60) == want


@room_sources
def test_a_registered_nick_is_kept_for_its_owner(imported: Imported) -> None:

    async def scenario() -> dict[str, str]:
        out = {}
        dave = await _login(imported, "dave")  # no affiliation in the lobby
        carol = await _login(imported, "carol")  # registered "Carol" on ejabberd
        try:
            try:
                await dave.plugin["xep_0045"].join_muc_wait(
                    new(LOBBY), "Carol", maxstanzas=0, timeout=10
                )
                out["other"] = "joined"
            except Exception as exc:  # PresenceError
                out["other"] = exc.presence["error"]["condition"]  # type: ignore[attr-defined]
            await carol.plugin["xep_0045"].join_muc_wait(
                new(LOBBY), "Carol", maxstanzas=0, timeout=10
            )
            out["owner"] = "joined"
        finally:
            await dave.close()
            await carol.close()
        return out

    got = run(scenario, 60)
    assert got["other"] == "conflict"
    assert got["owner"] == "joined"


@room_sources
def test_join_history_has_the_old_ids_in_order(imported: Imported) -> None:
    n = 7
    spoken = [r for r in imported.site.pop.room_archive[LOBBY] if r[2]]

    async def scenario() -> list[tuple[str, str, str]]:
        carol = await _login(imported, "carol")
        try:
            _p, _s, _o, history = await carol.plugin["xep_0045"].join_muc_wait(
                new(LOBBY), "Carol", maxstanzas=n, timeout=15
            )
        finally:
            await carol.close()
        return [
            (m.xml.find(SID).get("id") if m.xml.find(SID) is not None else "",
             m["from"].resource, m["body"])
            for m in history
        ]  # fmt: skip

    assert run(scenario, 60) == [tuple(r) for r in spoken[-n:]]


async def _mam(client: Client, archive: str | None) -> list[tuple[str, str, str]]:
    mam = client.plugin["xep_0313"]
    out = []
    async for r in mam.iterate(jid=archive, rsm={"max": 50}, total=2000):
        stanza = r["mam_result"]["forwarded"]["stanza"]
        out.append((r["mam_result"]["id"], stanza["from"].resource, stanza["body"]))
    return out


@room_sources
def test_room_archives_have_the_old_ids_in_order(imported: Imported) -> None:
    pop = imported.site.pop

    async def scenario() -> dict[str, list[tuple[str, str, str]]]:
        alice = await _login(imported, "alice")
        try:
            await alice.plugin["xep_0045"].join_muc_wait(
                new(STAFF), "Alice", password=STAFF_PASSWORD, maxstanzas=0, timeout=15
            )
            return {room: await _mam(alice, new(room)) for room in (LOBBY, STAFF)}
        finally:
            await alice.close()

    got = run(scenario, 90)
    for room in (LOBBY, STAFF):
        spoken = [tuple(r) for r in pop.room_archive[room] if r[2]]
        assert [r for r in got[room] if r[2]] == spoken
        assert len(spoken) > 10


@room_sources
def test_account_archive_has_the_old_ids_in_order(imported: Imported) -> None:

    async def scenario() -> list[tuple[str, str]]:
        alice = await _login(imported, "alice")
        try:
            return [(i, body) for i, _res, body in await _mam(alice, None)]
        finally:
            await alice.close()

    want = [tuple(r) for r in imported.site.pop.account_archive[f"alice@{DOMAIN}"]]
    assert run(scenario, 60) == want
