"""Per-account limits (issue 13 #5, #6): defaults and ranges."""

from __future__ import annotations

import re

import pytest

from xmppd.config import ConfigError, load_config


def test_queue_limits_have_safe_defaults() -> None:
    config = load_config(environ={})
    assert config.limits.max_resources == 16
    assert config.sm.max_detached == 4
    assert config.offline.max_messages == 500


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("limits", "max_resources", 0),
        ("sm", "max_detached", -1),
        ("offline", "max_messages", -1),
    ],
)
def test_queue_limits_out_of_range(section: str, key: str, value: int) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{section}.{key}")):
        load_config(environ={}, overrides={section: {key: value}})
