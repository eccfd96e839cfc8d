"""The one settings loader (xmppd.settings) as xmppd and both bridges use it.

The same string means the same value in every program, unknown keys and wrong types are
refused with the dotted key named, and every section's rule still fires from where it now
lives (its own ``validate()``) with the key as the whole configuration names it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from bridges.irc import config as ircconf
from bridges.webridge import config as webconf
from xmppd import settings
from xmppd.config import Config, ConfigError, load_config
from xmppd.settings import ConfigError as SettingsError

IRC_TOML = (
    '[xmpp]\ndomain = "irc.localhost"\nsecret = "s"\nroom = "sax@conference.localhost"\n'
    '[irc]\nservers = ["irc.example:6697"]\nchannel = "#sax"\n'
)


@pytest.fixture
def irc_file(tmp_path: Path) -> Path:
    path = tmp_path / "irc.toml"
    path.write_text(IRC_TOML, encoding="utf-8")
    return path


def test_one_error_type_for_every_program() -> None:
    assert ConfigError is SettingsError is ircconf.ConfigError is webconf.ConfigError


# ---------------------------------------------------------------- the same coercion
@pytest.mark.parametrize(
    ("text", "value"),
    [(w, True) for w in ("true", "TRUE", "1", "yes", "on", " True ")]
    + [(w, False) for w in ("false", "False", "0", "no", "off")],
)
def test_booleans_read_alike_in_xmppd_and_the_irc_bridge(
    text: str, value: bool, irc_file: Path
) -> None:
    xmppd = load_config(environ={"XMPPD_C2S_REQUIRE_ENCRYPTION": text})
    assert xmppd.c2s.require_encryption is value
    irc = ircconf.load(irc_file, {"IRCBRIDGE_RELAY_JOINS_PARTS": text})
    assert irc.relay.joins_parts is value
    # a string in the file reads as it does from the environment (the IRC bridge refused it)
    irc_file.write_text(IRC_TOML + f'[relay]\njoins_parts = "{text}"\n', encoding="utf-8")
    assert ircconf.load(irc_file, {}).relay.joins_parts is value


@pytest.mark.parametrize("text", ["maybe", "", "2", "y"])
def test_other_booleans_are_refused_alike(text: str, irc_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"^c2s\.require_encryption: expected true or false"):
        load_config(environ={"XMPPD_C2S_REQUIRE_ENCRYPTION": text})
    with pytest.raises(ConfigError, match=r"^relay\.joins_parts: expected true or false"):
        ircconf.load(irc_file, {"IRCBRIDGE_RELAY_JOINS_PARTS": text})


def test_numbers_are_refused_with_the_same_words_everywhere(irc_file: Path) -> None:
    cases: list[tuple[Any, str]] = [
        (lambda: load_config(environ={"XMPPD_C2S_PORT": "lots"}), "c2s.port"),
        (lambda: webconf.load(None, {"WEBRIDGE_XMPP_PORT": "lots"}), "xmpp.port"),
        (lambda: ircconf.load(irc_file, {"IRCBRIDGE_XMPP_PORT": "lots"}), "xmpp.port"),
    ]
    for call, key in cases:
        with pytest.raises(ConfigError) as info:
            call()
        assert str(info.value) == f"{key}: expected a number, got 'lots'"


def test_lists_are_comma_separated_everywhere(irc_file: Path) -> None:
    xmppd = load_config(environ={"XMPPD_HTTP_CORS_ORIGINS": "https://a.example, https://b.example"})
    assert xmppd.http.cors_origins == ["https://a.example", "https://b.example"]
    irc = ircconf.load(irc_file, {"IRCBRIDGE_IRC_SERVERS": "a.example:6667, b.example,"})
    assert irc.irc.servers == ["a.example:6667", "b.example"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5222, 5222), ("5222", 5222), (5222.0, 5222), ("5222.0", 5222)],
)
def test_an_int_key_takes_whole_numbers(value: Any, expected: int) -> None:
    assert load_config(environ={}, overrides={"c2s": {"port": value}}).c2s.port == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (5222.5, "c2s.port: expected a whole number, got 5222.5"),
        ("5222.5", "c2s.port: expected a whole number, got '5222.5'"),
        (True, "c2s.port: expected a number, got True"),
        ([5222], "c2s.port: expected a number, got [5222]"),
    ],
)
def test_an_int_key_refuses_the_rest(value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={}, overrides={"c2s": {"port": value}})
    assert str(info.value) == message


@pytest.mark.parametrize("value", ["nan", "inf", float("inf"), "-inf"])
def test_a_float_key_must_be_finite(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"^c2s\.send_timeout: expected a"):
        load_config(environ={}, overrides={"c2s": {"send_timeout": value}})


def test_a_string_key_takes_strings_only() -> None:
    with pytest.raises(ConfigError, match=r"^server\.domain: expected a string, got 5"):
        load_config(environ={}, overrides={"server": {"domain": 5}})


# ---------------------------------------------------------------- unknown keys
def test_an_unknown_key_in_the_file_is_named_dotted(tmp_path: Path) -> None:
    path = tmp_path / "xmppd.toml"
    path.write_text("[c2s]\nprot = 5222\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == "c2s.prot: unknown key (did you mean port?)"


def test_an_unknown_key_from_the_environment_names_its_variable(irc_file: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={"XMPPD_C2S_COLOUR": "red"})
    assert str(info.value) == "c2s.colour: unknown key (set by XMPPD_C2S_COLOUR)"
    with pytest.raises(ConfigError, match=r"^nope: unknown key \(set by XMPPD_NOPE_X\)"):
        load_config(environ={"XMPPD_NOPE_X": "1"})
    # the IRC bridge used to ignore a misspelt variable: now it is refused like elsewhere
    with pytest.raises(ConfigError, match=r"^irc\.chanel: unknown key .*IRCBRIDGE_IRC_CHANEL"):
        ircconf.load(irc_file, {"IRCBRIDGE_IRC_CHANEL": "#sax"})


def test_program_variables_that_are_not_keys_are_left_alone(tmp_path: Path) -> None:
    secret = tmp_path / "s"
    secret.write_text("x", encoding="utf-8")
    env = {"XMPPD_CONFIG": "/nowhere", "XMPPD_COMPONENT_IRC_LOCALHOST_SECRET": "env"}
    config = load_config(
        environ=env, overrides={"components": [{"domain": "irc.localhost", "secret": "f"}]}
    )
    assert config.components[0].secret == "env"
    assert webconf.load(None, {"WEBRIDGE_CONFIG": "/x", "WEBRIDGE_XMPP_SECRET": "s"})


def test_a_table_array_entry_is_named_by_its_index() -> None:
    rooms = [{"name": "a"}, {"name": "b", "whois": "everyone"}]
    with pytest.raises(ConfigError, match=r"^muc\.rooms\[1\]\.whois: 'everyone' is not one of"):
        load_config(environ={}, overrides={"muc": {"rooms": rooms}})


def test_a_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[c2s\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^config file {bad}: "):
        ircconf.load(bad, {})
    bad.write_bytes(b"[c2s]\nbind = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        webconf.load(str(bad), {})


# ---------------------------------------------------------------- retired keys
def test_the_retired_idle_timeout_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "xmppd.toml"
    path.write_text("[c2s]\nidle_timeout = 300.0\nport = 5522\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="xmppd.settings"):
        config = load_config(path, environ={"XMPPD_C2S_IDLE_TIMEOUT": "600"})
    assert config.c2s.port == 5522
    assert not hasattr(config.c2s, "idle_timeout")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines  # the file's and the variable's value: one key, one line
    assert "event=config_retired key=c2s.idle_timeout" in lines[0]
    assert "remove it" in lines[0]


# ---------------------------------------------------------------- every rule, still named
def _component(**kw: Any) -> dict[str, Any]:
    return {"components": [{"domain": "irc.localhost", "secret": "s", **kw}]}


RULES: list[tuple[dict[str, Any], str]] = [
    ({"server": {"domain": "a b"}}, "server.domain: "),
    ({"server": {"log_level": "LOUD"}}, "server.log_level: 'LOUD' is not one of"),
    ({"muc": {"rooms": [{"name": "a b"}]}}, "muc.rooms[0].name: "),
    ({"c2s": {"port": 70000}}, "c2s.port: 70000 is not a TCP port"),
    ({"c2s": {"direct_tls_port": -1}}, "c2s.direct_tls_port: -1 is not a TCP port"),
    ({"c2s": {"send_timeout": 0}}, "c2s.send_timeout: must be positive"),
    ({"c2s": {"send_queue_bytes": 20_000}}, "c2s.send_queue_bytes: must be at least limits."),
    ({"http": {"port": 70000}}, "http.port: 70000 is not a TCP port"),
    ({"http": {"tls_port": 70000}}, "http.tls_port: 70000 is not a TCP port"),
    ({"http": {"path_prefix": "xmpp/"}}, "http.path_prefix: must start with '/'"),
    ({"http": {"trusted_proxies": ["nope"]}}, "http.trusted_proxies: 'nope' is not an address"),
    ({"http": {"metrics_allow": ["localhost"]}}, "http.metrics_allow: 'localhost' is not an"),
    ({"http": {"forwarded_header": "via"}}, "http.forwarded_header: must be"),
    ({"http": {"cors_origins": ["a.example"]}}, "http.cors_origins: 'a.example' is not scheme"),
    ({"http": {"read_timeout": 0}}, "http.read_timeout: must be positive"),
    ({"http": {"keep_alive_timeout": 0}}, "http.keep_alive_timeout: must be positive"),
    ({"http": {"max_body_size": 20_000}}, "http.max_body_size: must be at least limits."),
    ({"http": {"public_url": "forum.example.org"}}, "http.public_url: 'forum.example.org' mus"),
    ({"http": {"public_url": "https://forum.example.org/"}}, "http.public_url: no user, query"),
    ({"http": {"public_url": "https://a.example/x?y"}}, "http.public_url: no user, query"),
    ({"http": {"public_url": "https://a.example:99999"}}, "http.public_url: 'https://a.examp"),
    ({"http": {"public_url": "https://a.example/x y"}}, "http.public_url: no spaces"),
    ({"bosh": {"max_wait": 0}}, "bosh.max_wait: must be at least 1"),
    ({"bosh": {"max_inactivity": 0}}, "bosh.max_inactivity: must be at least 1"),
    ({"bosh": {"max_sessions": 0}}, "bosh.max_sessions: must be at least 1"),
    ({"bosh": {"max_hold": -1}}, "bosh.max_hold: must not be negative"),
    ({"bosh": {"polling": -1}}, "bosh.polling: must not be negative"),
    ({"bosh": {"max_pause": -1}}, "bosh.max_pause: must not be negative"),
    ({"bosh": {"gap_grace": 0}}, "bosh.gap_grace: must be positive"),
    ({"bosh": {"max_buffer_bytes": 20_000}}, "bosh.max_buffer_bytes: must be at least limits."),
    ({"limits": {"max_stanza_size": 100}}, "limits.max_stanza_size: must be at least 10000"),
    ({"limits": {"max_connections": -1}}, "limits.max_connections: must not be negative"),
    ({"limits": {"ipv6_prefix": 8}}, "limits.ipv6_prefix: must be between 16 and 128"),
    ({"limits": {"max_resources": 0}}, "limits.max_resources: must be at least 1"),
    ({"tls": {"cert": "/etc/cert.pem"}}, "tls: give both cert and key"),
    ({"auth": {"backend": "phpbb"}}, "auth.phpbb.url: required when auth.backend = 'phpbb'"),
    ({"auth": {"phpbb": {"recheck_interval": 0.5}}}, "auth.phpbb.recheck_interval: 0 (off)"),
    ({"muc": {"history_default": 300}}, "muc.history_default: must not exceed muc.history_max"),
    ({"muc": {"max_nick_length": 0}}, "muc.max_nick_length: must be between 1 and 1023"),
    ({"muc": {"max_rooms": 0}}, "muc.max_rooms: must be at least 1"),
    ({"muc": {"max_rooms_per_user": 0}}, "muc.max_rooms_per_user: must be at least 1"),
    ({"muc": {"room_creations_per_minute": 0}}, "muc.room_creations_per_minute: must be"),
    ({"muc": {"history_max_bytes": -1}}, "muc.history_max_bytes: must not be negative"),
    ({"muc": {"invites_per_minute": -1}}, "muc.invites_per_minute: must not be negative"),
    ({"sm": {"resume_timeout": 0}}, "sm.resume_timeout: must be at least 1 second"),
    ({"sm": {"request_every": 0}}, "sm.request_every: must be at least 1"),
    ({"sm": {"max_unacked": 0}}, "sm.max_unacked: must be at least 1"),
    ({"sm": {"max_detached": -1}}, "sm.max_detached: must not be negative"),
    ({"offline": {"max_messages": -1}}, "offline.max_messages: must not be negative"),
    ({"roster": {"max_items": 0}}, "roster.max_items: must be at least 1"),
    ({"roster": {"max_item_bytes": 100}}, "roster.max_item_bytes: must be at least 512"),
    ({"roster": {"max_items": 1000}}, "roster.max_items * roster.max_item_bytes: a full"),
    ({"component_listener": {"port": 70000}}, "component_listener.port: 70000 is not a TCP"),
    ({"component_listener": {"max_connections": 0}}, "component_listener.max_connections: "),
    (
        {"component_listener": {"max_connections_per_ip": 0}},
        "component_listener.max_connections_per_ip: must be at least 1",
    ),
    (
        {"component_listener": {"send_queue_bytes": 20_000}},
        "component_listener.send_queue_bytes: must be at least limits.max_stanza_size",
    ),
    (_component(domain="a b"), "components[0].domain: "),
    (_component(domain="conference.localhost"), "components[0].domain: conference.localhost is"),
    (_component(secret_file="/x"), "components[0]: give secret or secret_file, not both"),
    (_component(secret="", secret_file="/nonexistent"), "components[0].secret_file: cannot read"),
    (_component(secret=""), "components[0].secret: required (or secret_file, or XMPPD_COMPON"),
    (_component(muc_nicks=["IRC", " "]), "components[0].muc_nicks: empty pattern"),
    ({"admin": {"timeout": 0}}, "admin.timeout: must be positive"),
    ({"admin": {"group": "no-such-group-here"}}, "admin.group: no group named"),
    ({"admin": {"group": "0"}}, "admin.socket: required with admin.group"),
    ({"admin": {"socket": "/" + "s" * 120}}, "admin.socket: /sss"),
]


@pytest.mark.parametrize(("overrides", "message"), RULES, ids=[m.split(":")[0] for _, m in RULES])
def test_every_rule_names_its_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={}, overrides=overrides)
    assert str(info.value).startswith(message), str(info.value)


def test_the_rules_pass_the_defaults_and_normalise() -> None:
    config = load_config(
        environ={},
        overrides={"server": {"domain": "LocalHost"}, **_component(domain="IRC.LocalHost")},
    )
    assert config.server.domain == "localhost"
    assert config.components[0].domain == "irc.localhost"
    assert load_config(environ={}) == Config()


# ---------------------------------------------------------------- the loader alone
@dataclass
class Inner:
    level: int = 1

    def validate(self) -> None:
        if self.level > 9:
            raise ConfigError.at("level", "at most 9")


@dataclass
class Section:
    mode: str | int = "0660"
    kind: Literal["a", "b"] = "a"
    inner: Inner = field(default_factory=Inner)
    items: list[Inner] = field(default_factory=list)


@dataclass
class Schema:
    section: Section = field(default_factory=Section)
    other_section: Section = field(default_factory=Section)


def test_nesting_unions_and_the_longest_section_name() -> None:
    env = {
        "T_SECTION_INNER__LEVEL": "3",
        "T_OTHER_SECTION_KIND": "b",
        "T_SECTION_MODE": "0640",
    }
    loaded = settings.load(
        Schema, prefix="T_", environ=env, overrides={"other_section": {"mode": 0o600}}
    )
    assert loaded.section.inner.level == 3 and loaded.section.mode == "0640"
    assert loaded.other_section.kind == "b" and loaded.other_section.mode == 0o600


def test_a_nested_validate_is_named_from_the_top() -> None:
    with pytest.raises(ConfigError, match=r"^section\.items\[1\]\.level: at most 9$"):
        settings.load(
            Schema,
            prefix="T_",
            environ={},
            overrides={"section": {"items": [{"level": 1}, {"level": 10}]}},
        )
    with pytest.raises(ConfigError, match=r"^section\.inner\.level: at most 9$"):
        settings.load(Schema, prefix="T_", environ={"T_SECTION_INNER__LEVEL": "10"})


@dataclass
class Unreadable:
    when: bytes = b""


@dataclass
class BadSchema:
    bad: Unreadable = field(default_factory=Unreadable)


def test_a_schema_bug_is_not_a_configuration_error() -> None:
    with pytest.raises(TypeError):
        settings.load(BadSchema, prefix="T_", environ={}, overrides={"bad": {"when": "x"}})
