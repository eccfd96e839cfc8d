"""The pure parts of vCards, private XML storage and password change: forum avatar paths
(no escape from the avatar directories, no email), the vCard made from a forum profile,
what the namespaces and requests are checked against, and the config sections."""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace

import pytest
from lxml import etree

from xmppd.auth.phpbb_profile import (
    AVATAR_CONFIG,
    Avatar,
    ForumProfile,
    locate_avatar,
    read_avatar,
)
from xmppd.services.account_config import PrivateStorageConfig, VcardConfig
from xmppd.services.password import MAX_PASSWORD_CHARS, requested_change
from xmppd.services.private_storage import is_reserved, stored_namespace
from xmppd.services.vcard import forum_vcard, parse_stored, serialise
from xmppd.settings import ConfigError
from xmppd.xml.errors import StanzaError

SETTINGS = dict(AVATAR_CONFIG, avatar_salt="salt")
URL = "https://forum.example.org"


def _row(kind: str, value: str, user_id: int = 7) -> SimpleNamespace:
    return SimpleNamespace(user_id=user_id, user_avatar=value, user_avatar_type=kind)


def test_uploaded_avatar_is_the_salted_file_and_the_download_url(tmp_path: Path) -> None:
    avatar = locate_avatar(_row("avatar.driver.upload", "7_1700.JPG"), SETTINGS, str(tmp_path), URL)
    assert avatar == Avatar(
        "image/jpeg",
        (tmp_path / "images/avatars/upload/salt_7.JPG").resolve(),
        URL + "/download/file.php?avatar=7_1700.JPG",
    )
    legacy = locate_avatar(_row("1", "7_1.png"), SETTINGS, "", URL)
    assert legacy is not None and legacy.path is None and legacy.mime == "image/png"


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("avatar.driver.upload", "8_1700.png"),  # another member's file
        ("avatar.driver.upload", "../7_1.png"),
        ("avatar.driver.upload", "7_1.php"),  # not an image
        ("avatar.driver.local", "../../config.png"),
        ("avatar.driver.local", "cats/evil.svg"),
        ("avatar.driver.remote", "file:///etc/passwd.png"),
        ("avatar.driver.remote", "javascript:alert(1)"),
        ("avatar.driver.gravatar", "someone@example.org"),  # would carry the email
        ("", ""),
        ("avatar.driver.upload", ""),
    ],
)
def test_bad_or_private_avatars_are_left_out(tmp_path: Path, kind: str, value: str) -> None:
    assert locate_avatar(_row(kind, value), SETTINGS, str(tmp_path), URL) is None


def test_gallery_path_stays_inside_the_gallery(tmp_path: Path) -> None:
    ok = locate_avatar(_row("avatar.driver.local", "cats/tabby.gif"), SETTINGS, str(tmp_path), "")
    assert ok == Avatar("image/gif", (tmp_path / "images/avatars/gallery/cats/tabby.gif").resolve())
    escaping = dict(SETTINGS, avatar_gallery_path="../../etc")
    found = locate_avatar(_row("3", "x.png"), escaping, str(tmp_path), "")
    assert found is None


def test_the_boards_avatar_switches_are_kept() -> None:
    upload, remote = _row("avatar.driver.upload", "7_1.png"), _row("2", "https://x.test/a.png")
    assert locate_avatar(upload, SETTINGS, "", URL) is not None
    assert locate_avatar(remote, SETTINGS, "", URL) is not None
    for switch in ("allow_avatar", "allow_avatar_upload"):
        assert locate_avatar(upload, dict(SETTINGS, **{switch: "0"}), "", URL) is None
    assert locate_avatar(remote, dict(SETTINGS, allow_avatar_upload="0"), "", URL) is not None
    assert locate_avatar(remote, dict(SETTINGS, allow_avatar_remote="0"), "", URL) is None


def test_read_avatar_stops_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"x" * 100)
    assert read_avatar(Avatar("image/png", path), 100) == b"x" * 100
    assert read_avatar(Avatar("image/png", path), 99) is None
    assert read_avatar(Avatar("image/png", tmp_path / "missing.png"), 100) is None
    assert read_avatar(Avatar("image/png", None, "https://x/y.png"), 100) is None


def test_forum_vcard_prefers_binval_then_extval() -> None:
    avatar = Avatar("image/png", None, "https://forum.example.org/a.png")
    with_file = forum_vcard(ForumProfile("Jane <Doe>", avatar, b"\x89PNG"))
    text = etree.tostring(with_file, encoding="unicode")
    assert text == (
        '<vCard xmlns="vcard-temp"><FN>Jane &lt;Doe&gt;</FN><NICKNAME>Jane &lt;Doe&gt;</NICKNAME>'
        "<PHOTO><TYPE>image/png</TYPE><BINVAL>"
        + base64.b64encode(b"\x89PNG").decode()
        + "</BINVAL></PHOTO></vCard>"
    )
    url_only = etree.tostring(forum_vcard(ForumProfile("j", avatar)), encoding="unicode")
    assert "<PHOTO><EXTVAL>https://forum.example.org/a.png</EXTVAL></PHOTO>" in url_only
    none = etree.tostring(forum_vcard(ForumProfile("j")), encoding="unicode")
    assert "PHOTO" not in none


def test_serialise_keeps_only_the_namespaces_used() -> None:
    iq = etree.fromstring(
        "<iq xmlns='jabber:client' xmlns:x='urn:unused' type='set'>"
        "<vCard xmlns='vcard-temp'><FN>A</FN></vCard>tail</iq>"
    )
    text = serialise(iq[0])
    assert text == '<vCard xmlns="vcard-temp"><FN>A</FN></vCard>'
    assert etree.tostring(parse_stored(text), encoding="unicode") == text


def test_reserved_namespaces() -> None:
    for namespace in ("jabber:iq:roster", "jabber:iq:private", "http://jabber.org/protocol/x",
                      "vcard-temp", ""):  # fmt: skip
        assert is_reserved(namespace)
    for namespace in ("storage:bookmarks", "gajim:prefs", "urn:xmpp:bookmarks:1"):
        assert not is_reserved(namespace)


def _query(inner: str) -> etree._Element:
    return etree.fromstring(f"<query xmlns='jabber:iq:private'>{inner}</query>")


def test_a_set_holds_elements_of_one_free_namespace() -> None:
    assert stored_namespace(_query("<a xmlns='x:a'/><b xmlns='x:a'/>")) == "x:a"
    for inner in ("", "<a xmlns='x:a'/><b xmlns='x:b'/>", "<a/>", "<a xmlns='jabber:x:y'/>",
                  f"<a xmlns='x:{'n' * 300}'/>"):  # fmt: skip
        with pytest.raises(StanzaError) as err:
            stored_namespace(_query(inner))
        assert err.value.condition == "not-acceptable"


def _register(inner: str) -> etree._Element:
    return etree.fromstring(f"<query xmlns='jabber:iq:register'>{inner}</query>")


def test_password_change_requests() -> None:
    ok = "<username>Alice</username><password>n3w</password>"
    assert requested_change(_register(ok), "alice") == "n3w"
    bare = "<username>alice@localhost</username><password>x</password>"
    assert requested_change(_register(bare), "alice") == "x"
    cases = {
        "<remove/>": "not-allowed",
        "<username>bob</username><password>x</password>": "not-allowed",
        "<username>a\x7fb</username><password>x</password>": "not-allowed",
        "<password>x</password>": "bad-request",
        "<username>alice</username>": "bad-request",
        "<username>alice</username><password/>": "bad-request",
        "<username>alice</username><password></password>": "bad-request",
        f"<username>alice</username><password>{'p' * (MAX_PASSWORD_CHARS + 1)}</password>": (
            "not-acceptable"
        ),
    }
    for inner, condition in cases.items():
        with pytest.raises(StanzaError) as err:
            requested_change(_register(inner.replace("\x7f", "&#127;")), "alice")
        assert err.value.condition == condition, inner


def test_config_sections_check_their_limits() -> None:
    VcardConfig().validate()
    PrivateStorageConfig().validate()
    for bad in (
        VcardConfig(max_size=100),
        VcardConfig(max_avatar_bytes=70_000),
        VcardConfig(forum_url="ftp://forum"),
        PrivateStorageConfig(max_item_size=10),
        PrivateStorageConfig(max_total_size=2048, max_item_size=4096),
        PrivateStorageConfig(max_items=0),
    ):
        with pytest.raises(ConfigError):
            bad.validate()
