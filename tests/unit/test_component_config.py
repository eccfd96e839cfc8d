"""``[component_listener]`` and ``[[components]]``: parsing, secrets, env overrides, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmppd.config import ConfigError, component_env_key, load_config

BASE = {"components": [{"domain": "IRC.Localhost", "secret": "a", "muc_nicks": ["IRC*"]}]}


def test_components_parse_and_normalise() -> None:
    config = load_config(environ={}, overrides=BASE)
    (comp,) = config.components
    assert comp.domain == "irc.localhost"
    assert comp.secret == "a"
    assert comp.muc_nicks == ["IRC*"]
    assert config.component_listener.host == "127.0.0.1"
    assert config.component_listener.port == 5347


def test_env_overrides_secret_and_listener() -> None:
    env = {
        "XMPPD_COMPONENT_IRC_LOCALHOST_SECRET": "from-env",
        "XMPPD_COMPONENT_LISTENER_PORT": "15347",
    }
    config = load_config(environ=env, overrides=BASE)
    assert config.components[0].secret == "from-env"
    assert config.component_listener.port == 15347


def test_env_secret_for_unknown_component_is_an_error() -> None:
    with pytest.raises(ConfigError, match="XMPPD_COMPONENT_NOPE_SECRET"):
        load_config(environ={"XMPPD_COMPONENT_NOPE_SECRET": "x"}, overrides=BASE)


def test_env_key() -> None:
    assert component_env_key("irc-bridge.example.org") == "IRC_BRIDGE_EXAMPLE_ORG"


def test_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_text("  file-secret\n", encoding="utf-8")
    config = load_config(
        environ={}, overrides={"components": [{"domain": "a.localhost", "secret_file": str(path)}]}
    )
    assert config.components[0].secret == "file-secret"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"domain": "a.localhost"}, "components\\[0\\].secret: required"),
        ({"domain": "a.localhost", "secret": "x", "secret_file": "/y"}, "not both"),
        ({"domain": "a.localhost", "secret_file": "/nonexistent/x"}, "secret_file"),
        ({"domain": "localhost", "secret": "x"}, "already served"),
        ({"domain": "conference.localhost", "secret": "x"}, "already served"),
        ({"domain": "a b", "secret": "x"}, "components\\[0\\].domain"),
        ({"domain": "a.localhost", "secret": "x", "muc_nicks": [" "]}, "muc_nicks"),
        ({"domain": "a.localhost", "secret": "x", "colour": "red"}, "unknown key"),
    ],
)
def test_bad_component_entries_name_the_key(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ={}, overrides={"components": [entry]})


def test_duplicate_domains_are_refused() -> None:
    entries = [{"domain": "a.localhost", "secret": "x"}, {"domain": "A.localhost", "secret": "y"}]
    with pytest.raises(ConfigError, match="already served"):
        load_config(environ={}, overrides={"components": entries})


def test_bridge_variables_in_the_same_environment_do_not_touch_xmppd() -> None:
    """A shared EnvironmentFile may carry the bridges' variables: xmppd must ignore them."""
    environ = {
        "IRCBRIDGE_XMPP_SECRET": "irc-secret",
        "IRCBRIDGE_IRC_SERVERS": "irc.example:6697",
        "WEBRIDGE_XMPP_SECRET": "web-secret",
        "XMPPD_C2S_PORT": "5522",
    }
    config = load_config(environ=environ)
    assert config.c2s.port == 5522
    assert config.components == []


def test_unknown_xmppd_section_in_the_environment_is_refused() -> None:
    """A typo in an XMPPD_ variable is an error naming it, never silently ignored."""
    with pytest.raises(ConfigError, match="irc"):
        load_config(environ={"XMPPD_IRC_SERVERS": "irc.example:6697"})
