"""The one table of room configuration fields: form, disco and persistence agree with it."""

from __future__ import annotations

import pytest

from xmppd.muc import forms
from xmppd.muc.roomconfig import (
    CONFIG_FIELDS,
    RoomSettings,
    apply_form,
    config_form,
    features,
    roominfo,
)
from xmppd.xml.errors import StanzaError


def shown(settings: RoomSettings) -> dict[str, list[str]]:
    return forms.form_values(config_form(settings, "t").el)


def test_every_field_is_a_setting_and_appears_in_the_form_in_table_order() -> None:
    names = set(RoomSettings.__dataclass_fields__)
    assert all(cf.attr in names for cf in CONFIG_FIELDS)
    assert list(shown(RoomSettings())) == ["FORM_TYPE", *(cf.var for cf in CONFIG_FIELDS)]


def test_submitting_the_form_as_shown_changes_nothing() -> None:
    settings = RoomSettings(title="T", whois="moderators", password="pw", max_occupants=7)
    before = settings.to_json()
    apply_form(settings, shown(settings), 1000)
    assert settings.to_json() == before


def test_a_bad_value_changes_nothing() -> None:
    settings = RoomSettings()
    before = settings.to_json()
    with pytest.raises(StanzaError) as err:
        apply_form(
            settings,
            {"muc#roomconfig_roomname": ["new"], "muc#roomconfig_whois": ["everyone"]},
            1000,
        )
    assert err.value.condition == "not-acceptable"
    assert settings.to_json() == before


def test_max_occupants_is_capped_by_the_service_and_empty_keeps_it() -> None:
    settings = RoomSettings(max_occupants=50)
    apply_form(settings, {"muc#roomconfig_maxusers": [""]}, 100)
    assert settings.max_occupants == 50
    apply_form(settings, {"muc#roomconfig_maxusers": ["500"]}, 100)
    assert settings.max_occupants == 100


def test_password_protection_needs_a_password_and_turning_it_off_clears_it() -> None:
    settings = RoomSettings()
    with pytest.raises(StanzaError):
        apply_form(settings, {"muc#roomconfig_passwordprotectedroom": ["1"]}, 10)
    apply_form(
        settings,
        {"muc#roomconfig_passwordprotectedroom": ["1"], "muc#roomconfig_roomsecret": ["s"]},
        10,
    )
    assert settings.password == "s"
    assert "muc_passwordprotected" in set(features(settings))
    apply_form(settings, {"muc#roomconfig_passwordprotectedroom": ["0"]}, 10)
    assert settings.password == ""


def test_disco_features_and_roominfo_come_from_the_table() -> None:
    settings = RoomSettings(persistent=False, whois="moderators", description="d")
    assert set(features(settings)) == {
        "muc_temporary", "muc_public", "muc_unmoderated", "muc_open",
        "muc_semianonymous", "muc_unsecured",
    }  # fmt: skip
    assert dict(roominfo(settings)) == {
        "muc#roominfo_description": ["d"],
        "muc#roominfo_changesubject": ["0"],
    }


def test_settings_survive_json() -> None:
    settings = RoomSettings(title="T", members_only=True, creator="a@b")
    assert RoomSettings.from_json(settings.to_json()) == settings
