"""The pieces a reload is made of, without sockets: what changed, the TLS pair check, the
limit setters, ``[[muc.rooms]]`` on a running MUC service, the report. The whole reload
against a running ``xmppd serve`` is in tests/integration/test_config_reload.py."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.certs import write_pair
from tests.unit.routing_helpers import Harness, error_condition
from xmppd.auth.ratelimit import FailureLimiter, LoginLimits
from xmppd.config import ComponentConfig, Config, ConfigError, load_config
from xmppd.muc.config import MucConfig, RoomSeed
from xmppd.muc.service import MucService, install
from xmppd.reload import LIVE, ReloadReport, changed_keys
from xmppd.storage.muc import MucStore
from xmppd.transport.admission import Admission
from xmppd.transport.tls import load_pair

MUC = "http://jabber.org/protocol/muc"
U = "{%s#user}" % MUC
SERVICE = "conference.example.org"
DISCO_INFO = "http://jabber.org/protocol/disco#info"


# ------------------------------------------------------------------- certificates
def test_a_good_pair_loads_into_every_listener_context(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_pair(cert, key, "chat.example.org")
    pair = load_pair(cert, key)
    assert pair.subject == "CN=chat.example.org"
    assert pair.c2s is not pair.https
    assert len(pair.fingerprint) == 64 and pair.fingerprint in pair.describe()
    # the same files give the same digest: a reload can tell "nothing changed"
    assert load_pair(cert, key).digest == pair.digest
    write_pair(cert, key, "chat.example.org")
    assert load_pair(cert, key).digest != pair.digest


def test_a_key_of_another_certificate_is_refused_naming_tls_key(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_pair(cert, key, "a")
    write_pair(cert, tmp_path / "other.pem", "b")  # the certificate of another key
    with pytest.raises(ConfigError, match=r"^tls\.key: .* is not the key of the certificate"):
        load_pair(cert, key)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("missing key", r"^tls\.key: cannot read the private key .*No such file"),
        ("missing cert", r"^tls\.cert: cannot read the certificate .*No such file"),
        ("garbage cert", r"^tls\.cert: .* holds no PEM certificate"),
        ("garbage key", r"^tls\.key: .* holds no PEM private key"),
        ("encrypted key", r"^tls\.key: .* is encrypted"),
        ("key is a directory", r"^tls\.key: cannot read the private key"),
    ],
)
def test_a_pair_that_does_not_load_is_refused_naming_the_key(
    tmp_path: Path, broken: str, message: str
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    private_key = write_pair(cert, key, "a")
    if broken == "missing key":
        key.unlink()
    elif broken == "missing cert":
        cert.unlink()
    elif broken == "garbage cert":
        cert.write_text("not a certificate\n")
    elif broken == "garbage key":
        key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    elif broken == "encrypted key":
        key.write_bytes(
            private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"pw"),
            )
        )
    else:
        key.unlink()
        key.mkdir()
    with pytest.raises(ConfigError, match=message):
        load_pair(cert, key)


def test_a_world_readable_key_of_ours_loses_world_access(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_pair(cert, key, "a")
    key.chmod(0o644)
    load_pair(cert, key)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o640


# ------------------------------------------------------------------- what changed
def test_changed_keys_names_dotted_keys_and_table_arrays_whole() -> None:
    old = Config()
    new = Config()
    assert changed_keys(old, new) == []
    new.c2s.port = 5522
    new.http.cors_origins = ["https://forum.example"]
    new.muc.rooms = [RoomSeed(name="sax", title="Sax")]
    new.components = [ComponentConfig(domain="irc.localhost", secret="s")]
    assert changed_keys(old, new) == ["c2s.port", "components", "http.cors_origins", "muc.rooms"]


def test_ports_are_not_live_keys() -> None:
    """Everything not in LIVE is reported as needing a restart: listeners never move."""
    ports = {"c2s.port", "c2s.direct_tls_port", "http.port", "http.tls_port"}
    assert not ports & set(LIVE)
    assert "component_listener.port" not in LIVE and "server.domain" not in LIVE


def test_report_summary_says_what_was_applied_and_what_needs_a_restart() -> None:
    assert ReloadReport().summary() == "configuration reloaded: nothing changed"
    report = ReloadReport(
        changed=["c2s.port", "server.log_level"],
        applied=["server.log_level"],
        needs_restart=["c2s.port"],
    )
    assert report.summary() == (
        "configuration reloaded: applied server.log_level; needs restart (not applied): c2s.port"
    )
    assert report.as_dict()["needs_restart"] == ["c2s.port"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[server]\nlog_level = "LOUD"\n', "server.log_level"),
        ('[[muc.rooms]]\nname = "a b@c"\n', "muc.rooms[0].name"),
    ],
)
def test_values_a_reload_could_not_apply_are_refused_at_validation(
    tmp_path: Path, text: str, key: str
) -> None:
    path = tmp_path / "xmppd.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="^" + re.escape(key) + ": "):
        load_config(path, environ={})


# ------------------------------------------------------------------- limits
def test_a_raised_failure_limit_is_reachable_again() -> None:
    """Each key keeps at most per_minute stamps: without resizing, a raised limit could
    never be reached by a key that already had failures (an unlimited key)."""
    now = [0.0]
    limiter = FailureLimiter(2, lambda: now[0])
    limiter.record_failure("k")
    limiter.record_failure("k")
    assert not limiter.allowed("k")
    limiter.set_per_minute(4)
    assert limiter.allowed("k")
    limiter.record_failure("k")
    limiter.record_failure("k")
    assert not limiter.allowed("k")
    limiter.set_per_minute(3)  # lowered: the newest three still count
    assert not limiter.allowed("k")
    now[0] = 61.0
    assert limiter.allowed("k")


def test_login_limits_follow_both_dimensions() -> None:
    limits = LoginLimits(1)
    limits.record_failure("192.0.2.1", "alice")
    assert not limits.allowed("192.0.2.1") and not limits.allowed("192.0.2.9", "alice")
    limits.set_per_minute(2)
    assert limits.allowed("192.0.2.1") and limits.allowed("192.0.2.9", "alice")


def test_a_lowered_cap_refuses_new_connections_only() -> None:
    admission = Admission(per_address=4, total=10)
    tickets = [admission.try_admit("192.0.2.1") for _ in range(3)]
    assert all(tickets)
    admission.resize(per_address=2, total=10)
    assert admission.count("192.0.2.1") == 3  # nobody is dropped
    assert admission.try_admit("192.0.2.1") is None
    for ticket in tickets[:2]:
        assert ticket is not None
        ticket.release()
    assert admission.try_admit("192.0.2.1") is not None  # 1 + 1 <= 2
    admission.resize(per_address=10, total=2)
    assert admission.try_admit("192.0.2.2") is None and admission.full


# ------------------------------------------------------------------- [[muc.rooms]]
@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, users=("alice", "bob"))
    yield harness
    harness.close()


def start(h: Harness, rooms: list[RoomSeed]) -> MucService:
    svc = install(h.router, h.adb, MucConfig(rooms=rooms), clock=lambda: h.now)
    assert svc is not None
    return svc


async def test_new_room_is_created_and_changed_room_reconfigured_with_occupants_kept(
    h: Harness,
) -> None:
    old = [RoomSeed(name="sax", title="Sax", subject="hello")]
    svc = start(h, old)
    alice = await h.connect("alice@example.org/a")
    await alice.send(f'<presence to="sax@{SERVICE}/Alice"><x xmlns="{MUC}"/></presence>')
    alice.take()

    new = [
        RoomSeed(name="sax", title="Sax lounge", moderated=True, whois="moderators", subject="hi"),
        RoomSeed(name="Lobby", title="Lobby"),
    ]
    added, changed = svc.apply_rooms(old, new)
    assert (added, changed) == (["lobby"], ["sax"])

    room = svc.rooms["sax"]
    s = room.settings
    assert (s.title, s.moderated, s.whois, s.persistent) == ("Sax lounge", True, "moderators", True)
    assert [o.nick for o in room.occupants.values()] == ["Alice"]  # nobody was kicked
    got = alice.take()
    codes = [
        {c.get("code") for c in m.iter(U + "status")} for m in got if m.tag.endswith("message")
    ]
    assert {"104", "173"} in codes  # §10.2.1: config changed, now semi-anonymous
    subjects = [m.findtext("{jabber:client}subject") for m in got]
    assert "hi" in subjects and room.subject == "hi"

    lobby = svc.rooms["lobby"]
    assert lobby.settings.title == "Lobby" and not lobby.settings.locked
    await alice.send(
        f'<iq to="lobby@{SERVICE}" type="get" id="d"><query xmlns="{DISCO_INFO}"/></iq>'
    )
    (reply,) = alice.take()
    assert reply.get("type") == "result", error_condition(reply)

    await svc.flush()  # what a restart would load again
    stored = {r.name: r for r in MucStore(h.adb.db).load_rooms()}
    assert set(stored) == {"sax", "lobby"}
    assert '"moderated": true' in stored["sax"].settings_json


async def test_unchanged_entries_touch_nothing_and_removed_ones_keep_their_room(
    h: Harness,
) -> None:
    old = [RoomSeed(name="sax"), RoomSeed(name="old")]
    svc = start(h, old)
    alice = await h.connect("alice@example.org/a")
    await alice.send(f'<presence to="sax@{SERVICE}/Alice"><x xmlns="{MUC}"/></presence>')
    alice.take()
    assert svc.apply_rooms(old, [RoomSeed(name="sax")]) == ([], [])
    assert alice.take() == []  # no 104 for a room whose entry did not change
    assert "old" in svc.rooms  # as after a restart: persistent until an owner destroys it
