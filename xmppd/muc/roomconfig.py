"""A room's settings and the ONE table of its §10.2 configuration fields.

Each configurable attribute of :class:`RoomSettings` is declared with :func:`setting`,
which attaches its form field(s): the ``muc#roomconfig_*`` var, the field type and label,
how a submitted value is parsed and checked, and what it shows in disco#info (§6.4: a
feature pair such as ``muc_persistent``/``muc_temporary``, a ``muc#roominfo_*`` var). The
owner's form (:func:`config_form`, :func:`apply_form`), disco#info (:func:`features`,
:func:`roominfo`) and persistence (:meth:`RoomSettings.to_json`) all read that one table.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from xmppd.muc import forms
from xmppd.xml.errors import StanzaError

#: A parser's answer for "leave the setting as it is" (an empty max-occupants field).
KEEP: Any = object()

ALLOW_PM = ("anyone", "participants", "moderators", "none")
WHOIS = ("moderators", "anyone")
PROTECTED = "muc#roomconfig_passwordprotectedroom"

#: raw submitted value, the service's own max occupants -> setting value (ValueError: bad)
Parser = Callable[[str, int], Any]


@dataclass(frozen=True, slots=True)
class ConfigField:
    """One field of the owner's form, bound to one attribute of :class:`RoomSettings`."""

    var: str
    type: str
    label: str
    parse: Parser
    options: tuple[tuple[str, str], ...] = ()
    #: disco#info features (§6.4) shown when the setting is on / off
    features: tuple[str, str] | None = None
    #: whether the setting counts as "on" for ``features``
    is_on: Callable[[Any], bool] = bool
    #: the ``muc#roominfo_*`` var it is shown under in disco#info, if any
    roominfo: str | None = None
    #: shown and submitted, but derived from the attribute by :func:`apply_form` itself
    derived: bool = False
    #: the :class:`RoomSettings` attribute (filled in from the dataclass)
    attr: str = ""

    def values(self, value: Any) -> list[str]:
        """The setting as this field's form values."""
        if self.type == "boolean":
            return forms.bool_value(bool(value))
        return [str(value)]


def setting(default: Any, *config: ConfigField) -> Any:
    """A :class:`RoomSettings` attribute with its form field(s) (the table's rows)."""
    return field(default=default, metadata={"config": config})


def _bool(raw: str, _cap: int) -> bool:
    return forms.parse_bool(raw)


def _text(limit: int) -> Parser:
    return lambda raw, _cap: raw[:limit]


def _choice(allowed: tuple[str, ...]) -> Parser:
    def parse(raw: str, _cap: int) -> str:
        if raw not in allowed:
            raise ValueError(raw)
        return raw

    return parse


def _max_users(raw: str, cap: int) -> Any:
    return max(1, min(int(raw), cap)) if raw else KEEP


def _flag(var: str, label: str, on: str, off: str, roominfo: str | None = None) -> ConfigField:
    return ConfigField(var, "boolean", label, _bool, features=(on, off), roominfo=roominfo)


_RC = "muc#roomconfig_"


@dataclass(slots=True)
class RoomSettings:
    """What an owner configures (§10.2) plus the room's occupant-id secret; stored as JSON."""

    title: str = setting(
        "", ConfigField(_RC + "roomname", "text-single", "Room title", _text(1024))
    )
    description: str = setting(
        "",
        ConfigField(_RC + "roomdesc", "text-single", "Description", _text(1024),
                    roominfo="muc#roominfo_description"),
    )  # fmt: skip
    persistent: bool = setting(
        True, _flag(_RC + "persistentroom", "Persistent", "muc_persistent", "muc_temporary")
    )
    public: bool = setting(True, _flag(_RC + "publicroom", "Public", "muc_public", "muc_hidden"))
    moderated: bool = setting(
        False, _flag(_RC + "moderatedroom", "Moderated", "muc_moderated", "muc_unmoderated")
    )
    members_only: bool = setting(
        False, _flag(_RC + "membersonly", "Members only", "muc_membersonly", "muc_open")
    )
    change_subject: bool = setting(
        False,
        ConfigField(_RC + "changesubject", "boolean", "Occupants may change the subject", _bool,
                    roominfo="muc#roominfo_changesubject"),
    )  # fmt: skip
    #: "anyone": real JIDs visible to all (non-anonymous); "moderators": semi-anonymous.
    whois: str = setting(
        "anyone",
        ConfigField(_RC + "whois", "list-single", "Who may see real JIDs", _choice(WHOIS),
                    options=(("moderators", "Moderators"), ("anyone", "Anyone")),
                    features=("muc_nonanonymous", "muc_semianonymous"),
                    is_on=lambda whois: whois == "anyone"),
    )  # fmt: skip
    allow_pm: str = setting(
        "anyone",
        ConfigField(_RC + "allowpm", "list-single", "Private messages", _choice(ALLOW_PM),
                    options=tuple((v, v.capitalize()) for v in ALLOW_PM)),
    )  # fmt: skip
    max_occupants: int = setting(
        1000, ConfigField(_RC + "maxusers", "text-single", "Max occupants", _max_users)
    )
    #: §7.2.6 password-protected room when non-empty (shown to owners in the config form).
    password: str = setting(
        "",
        ConfigField(PROTECTED, "boolean", "Password required to enter", _bool, derived=True,
                    features=("muc_passwordprotected", "muc_unsecured")),
        ConfigField(_RC + "roomsecret", "text-private", "Password", _text(256)),
    )  # fmt: skip
    #: A new user-created room stays locked until its owner configures it (§10.1).
    locked: bool = False
    #: The bare JID of the user who created the room ("" for configured rooms); counted
    #: against ``muc.max_rooms_per_user``.
    creator: str = ""
    secret: str = field(default_factory=lambda: secrets.token_hex(16))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RoomSettings:
        data = json.loads(text or "{}")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _table() -> tuple[ConfigField, ...]:
    rows: list[ConfigField] = []
    for f in fields(RoomSettings):
        rows.extend(replace(cf, attr=f.name) for cf in f.metadata.get("config", ()))
    return tuple(rows)


#: Every configuration field, in form order.
CONFIG_FIELDS: tuple[ConfigField, ...] = _table()


def config_form(settings: RoomSettings, title: str) -> forms.Form:
    """The §10.2 form showing ``settings`` (the owner module adds the affiliation lists)."""
    form = forms.Form("form", forms.ROOMCONFIG, title=title)
    for cf in CONFIG_FIELDS:
        value = getattr(settings, cf.attr)
        form.add(cf.var, cf.type, cf.values(value), cf.label, options=cf.options)
    return form


def apply_form(settings: RoomSettings, values: dict[str, list[str]], max_occupants: int) -> None:
    """Apply the submitted settings fields, all or none; unknown fields are ignored.

    Raises :class:`StanzaError` ``not-acceptable`` for a value the table refuses, or a
    password-protected room without a password (§10.2).
    """
    changes: dict[str, Any] = {}
    try:
        for cf in CONFIG_FIELDS:
            raw = forms.first(values, cf.var)
            if raw is None or cf.derived:
                continue
            value = cf.parse(raw, max_occupants)
            if value is not KEEP:
                changes[cf.attr] = value
        protected = forms.first(values, PROTECTED)
        if protected is not None and not forms.parse_bool(protected):
            changes["password"] = ""
        elif protected is not None and not changes.get("password", settings.password):
            raise StanzaError("not-acceptable", "a password-protected room needs a password")
    except ValueError:
        raise StanzaError("not-acceptable", "a configuration value is not valid") from None
    for attr, value in changes.items():
        setattr(settings, attr, value)


def features(settings: RoomSettings) -> Iterator[str]:
    """The disco#info features the settings show (§6.4), e.g. ``muc_persistent``."""
    for cf in CONFIG_FIELDS:
        if cf.features is not None:
            on, off = cf.features
            yield on if cf.is_on(getattr(settings, cf.attr)) else off


def roominfo(settings: RoomSettings) -> Iterator[tuple[str, list[str]]]:
    """The settings shown in the muc#roominfo form of disco#info: (var, values)."""
    for cf in CONFIG_FIELDS:
        if cf.roominfo is not None:
            yield cf.roominfo, cf.values(getattr(settings, cf.attr))


__all__ = [
    "ALLOW_PM",
    "CONFIG_FIELDS",
    "ConfigField",
    "RoomSettings",
    "apply_form",
    "config_form",
    "features",
    "roominfo",
]
