"""Per-account limits (issue 13 #5, #6, #13): defaults, ranges, and that a roster fits."""

from __future__ import annotations

import re

import pytest

from xmppd.config import ConfigError, load_config


def test_queue_limits_have_safe_defaults() -> None:
    config = load_config(environ={})
    assert config.limits.max_resources == 16
    assert config.sm.max_detached == 4
    assert config.offline.max_messages == 500
    roster = config.roster
    needed = roster.max_items * roster.max_item_bytes + 4096
    assert needed <= min(config.c2s.send_queue_bytes, config.bosh.max_buffer_bytes) // 2


def test_a_full_roster_must_fit_half_the_smaller_queue() -> None:
    with pytest.raises(ConfigError, match=r"roster\.max_items"):
        load_config(environ={}, overrides={"roster": {"max_items": 1000}})
    with pytest.raises(ConfigError, match=r"roster\.max_items"):
        load_config(environ={}, overrides={"bosh": {"max_buffer_bytes": 262_144}})
    small = {
        "c2s": {"send_queue_bytes": 262_144},
        "bosh": {"max_buffer_bytes": 262_144},
        "roster": {"max_items": 100},
    }
    assert load_config(environ={}, overrides=small).roster.max_items == 100


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("limits", "max_resources", 0),
        ("sm", "max_detached", -1),
        ("offline", "max_messages", -1),
        ("roster", "max_items", 0),
        ("roster", "max_groups", 0),
        ("roster", "max_item_bytes", 100),
    ],
)
def test_queue_limits_out_of_range(section: str, key: str, value: int) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{section}.{key}")):
        load_config(environ={}, overrides={section: {key: value}})
