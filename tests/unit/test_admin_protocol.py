"""The admin socket's JSON protocol, the peer check and the [admin] configuration."""

from __future__ import annotations

import json
import pwd
from pathlib import Path

import pytest

from xmppd.admin.commands import room_localpart
from xmppd.admin.listener import Peer, allowed
from xmppd.admin.protocol import (
    EXIT_STATUS,
    AdminError,
    Reply,
    decode_request,
    decode_response,
    encode_error,
    encode_reply,
    text_arg,
    xml_text,
)
from xmppd.config import Config, ConfigError, load_config


def test_request_round_trip_and_refusals() -> None:
    req = decode_request(b'{"command": "kick", "args": {"jid": "a@b"}}')
    assert (req.command, req.args) == ("kick", {"jid": "a@b"})
    assert decode_request(req.encode().rstrip(b"\n")) == req
    assert decode_request(b'{"command": "stats"}').args == {}
    for bad in (
        b"",
        b"\xff",
        b"[1]",
        b'{"args": {}}',
        b'{"command": 3}',
        b'{"command": "kick", "args": []}',
        b"not json",
    ):
        with pytest.raises(AdminError) as err:
            decode_request(bad)
        assert err.value.code == "bad-request"


def test_responses_carry_the_version_and_map_to_exit_statuses() -> None:
    ok = decode_response(encode_reply("1.0", Reply("done", {"n": 1})))
    assert ok == {"ok": True, "xmppd": "1.0", "message": "done", "result": {"n": 1}}
    err = decode_response(encode_error("1.0", AdminError("not-found", "no room x")))
    assert err == {"ok": False, "xmppd": "1.0", "error": "not-found", "message": "no room x"}
    assert AdminError("made-up", "x").code == "internal-error"
    assert decode_response(b"HTTP/1.1 400 Bad Request") is None
    assert decode_response(json.dumps({"ok": True}).encode()) is None  # not xmppd's
    assert {EXIT_STATUS[c] for c in ("bad-request", "unknown-command", "bad-config")} == {2}
    assert {EXIT_STATUS[c] for c in EXIT_STATUS} == {1, 2}


def test_argument_helpers() -> None:
    assert text_arg({"a": "x"}, "a") == "x"
    assert text_arg({}, "a", required=False) == ""
    for args in ({}, {"a": 3}, {"a": "x" * 5000}):
        with pytest.raises(AdminError):
            text_arg(args, "a")
    assert xml_text("tab\tand ünïcode 🎉", "t") == "tab\tand ünïcode 🎉"
    with pytest.raises(AdminError):
        xml_text("bell\x07", "t")


def test_room_names() -> None:
    service = "conference.example.org"
    assert room_localpart("SAX", service) == "sax"
    assert room_localpart("sax@conference.example.org", service) == "sax"
    for bad in ("sax@elsewhere.org", "sax@conference.example.org/nick", "a b", "@x"):
        with pytest.raises(AdminError) as err:
            room_localpart(bad, service)
        assert err.value.code == "bad-request"


def test_peer_check_root_own_uid_and_group_members() -> None:
    nobody = pwd.getpwnam("nobody")
    assert allowed(Peer(1, 0, 0), None, own_uid=1000)
    assert allowed(Peer(1, 1000, 1000), None, own_uid=1000)
    assert not allowed(Peer(1, nobody.pw_uid, nobody.pw_gid), None, own_uid=1000)
    # a group: the process's gid, or the user's primary group, or /etc/group membership
    assert allowed(Peer(1, 4242, 4343), 4343, own_uid=1000)
    assert allowed(Peer(1, nobody.pw_uid, 4343), nobody.pw_gid, own_uid=1000)
    assert not allowed(Peer(1, nobody.pw_uid, nobody.pw_gid), 4343, own_uid=1000)


def test_admin_config(tmp_path: Path) -> None:
    config = Config()
    assert config.admin_socket_path == (Path("var") / "admin.sock").absolute()
    assert load_config(
        None, {}, {"admin": {"socket": "/run/x/admin.sock"}}
    ).admin_socket_path == Path("/run/x/admin.sock")
    cases = [
        ({"group": "no-such-group-here"}, "admin.group"),
        ({"group": "nogroup"}, "admin.socket: required with admin.group"),
        ({"socket": "/" + "x" * 200}, "admin.socket"),
        ({"timeout": 0}, "admin.timeout"),
    ]
    for admin, key in cases:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(None, {}, {"admin": admin})
    # a long data_dir is fine when the socket is elsewhere or the socket is off
    long_dir = {"server": {"data_dir": "/" + "d" * 200}}
    load_config(None, {}, {**long_dir, "admin": {"socket": "/run/x.sock"}})
    load_config(None, {}, {**long_dir, "admin": {"enabled": False}})
