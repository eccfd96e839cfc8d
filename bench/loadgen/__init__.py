"""Load generator: one module per scenario, sharing the c2s client in :mod:`.xmpp`.

A scenario module provides HEADLINE (metric key, unit, higher-is-better), DEFAULTS and QUICK
parameters, accounts_needed(params), optionally RESTART_BEFORE_EACH, and
``async def run(target, params) -> dict`` that returns the headline metric plus details
(including client and server CPU over the measurement window). New scenarios (MUC fan-out,
join with history, BOSH, component messages) are new modules added to SCENARIOS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

from . import (
    bosh,
    component,
    idle_rss,
    logins,
    mam_page,
    messages,
    muc_fanout,
    muc_join,
    pep_fanout,
)


@dataclass
class Scenario:
    name: str
    module: ModuleType
    params: dict = field(default_factory=dict)  # overrides of module.DEFAULTS
    title: str = ""

    def resolved(self, quick: bool, extra: dict | None = None) -> dict:
        p = dict(self.module.DEFAULTS)
        p.update(self.params)
        if quick:
            p.update(self.module.QUICK)
        if extra:
            p.update({k: v for k, v in extra.items() if k in p})
        return p


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("logins", logins, {"mechanism": "scram"}, "c2s logins/s, SCRAM, 50 concurrent"),
        Scenario("logins_plain", logins, {"mechanism": "PLAIN"}, "c2s logins/s, PLAIN, 50 conc."),
        Scenario("messages", messages, {}, "1:1 messages/s, 50 pairs x 10 in flight"),
        Scenario("idle_rss_1000", idle_rss, {"connections": 1000}, "RSS/idle conn, 1,000"),
        Scenario("idle_rss_5000", idle_rss, {"connections": 5000}, "RSS/idle conn, 5,000"),
        Scenario(
            "idle_rss_1000_scram",
            idle_rss,
            {"connections": 1000, "mechanism": "scram"},
            "RSS/idle conn, 1,000, SCRAM logins",
        ),
        Scenario(
            "muc_fanout_20",
            muc_fanout,
            {"occupants": 20, "senders": 4, "window": 5},
            "MUC fan-out, N=20, 4 senders x 5 in flight",
        ),
        Scenario(
            "muc_fanout_200",
            muc_fanout,
            {"occupants": 200, "senders": 4, "window": 5},
            "MUC fan-out, N=200, 4 senders x 5 in flight",
        ),
        Scenario(
            "muc_fanout_20_1x1",
            muc_fanout,
            {"occupants": 20, "senders": 1, "window": 1},
            "MUC fan-out, N=20, 1 sender, 1 in flight",
        ),
        Scenario(
            "muc_fanout_200_1x1",
            muc_fanout,
            {"occupants": 200, "senders": 1, "window": 1},
            "MUC fan-out, N=200, 1 sender, 1 in flight",
        ),
        Scenario("muc_join_history", muc_join, {}, "MUC join with 20 history msgs, p50"),
        Scenario(
            "component_messages",
            component,
            {},
            "component -> user messages/s, 50 users x 10 in flight",
        ),
        Scenario(
            "bosh",
            bosh,
            {},
            "BOSH sessions set up/s (200); details: room round trip, 200 long-pollers",
        ),
        Scenario(
            "pep_fanout_200",
            pep_fanout,
            {"contacts": 200},
            "PEP avatar-metadata notifications to 200 contacts (+notify caps), 20 publishes/s",
        ),
        Scenario(
            "mam_page_1m",
            mam_page,
            {},
            "MAM page of 50 (last / RSM after / with), p50; archive size: --set archive=N",
        ),
    ]
}
# idle_rss_1000_scram and the muc_fanout_*_1x1 runs are extras: ask for them with --scenarios
DEFAULT_SCENARIOS = [
    "logins",
    "logins_plain",
    "messages",
    "idle_rss_1000",
    "idle_rss_5000",
    "muc_fanout_20",
    "muc_fanout_200",
    "muc_join_history",
    "component_messages",
    "bosh",
]
