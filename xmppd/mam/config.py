"""``[mam]``: each account's own message archive (XEP-0313) and its retention.

Shaped so ``xmppd.config`` holds it as ``config.mam``; every field has a safe default and
``XMPPD_MAM_*`` overrides like the other sections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from xmppd.settings import ConfigError


@dataclass(slots=True)
class MamConfig:
    #: Archive the accounts' one-to-one messages and answer their queries.
    enabled: bool = True
    #: Days a message stays in an account's archive; 0 keeps it forever. The service
    #: deletes older messages once an hour.
    retention_days: int = 0
    #: What an account archives until it sets its own preferences (XEP-0441).
    default: Literal["always", "never", "roster"] = "always"
    #: Largest page a query gets (RSM ``max`` above it is clamped, not refused).
    max_page: int = 250
    #: JIDs an account may list in each of its ``always`` and ``never`` preferences.
    max_pref_jids: int = 500
    #: Archive writes: at most this many per batch, at least every ``flush_interval`` s.
    batch_size: int = 500
    flush_interval: float = 0.25
    #: Durable one-to-one messages (issue 15): a client's XEP-0198 ``<a/>`` counts a message
    #: as received only once its archive rows are committed (group commit), so a crash
    #: loses no message the sender was told the server has: the recipient finds it in the
    #: archive even if it waited in a detached session's memory.
    durable: bool = True
    #: Seconds an ``<a/>`` waits for that commit (database down or slow); then it is sent.
    max_commit_wait: float = 5.0

    def validate(self) -> None:
        if self.default not in ("always", "never", "roster"):
            raise ConfigError.at("default", "must be always, never or roster")
        if self.retention_days < 0:
            raise ConfigError.at("retention_days", "must not be negative (0: keep forever)")
        for key in ("max_page", "max_pref_jids", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError.at(key, "must be at least 1")
        if self.flush_interval <= 0:
            raise ConfigError.at("flush_interval", "must be positive")
        if not 0.05 <= self.max_commit_wait <= 300:
            raise ConfigError.at("max_commit_wait", "must be between 0.05 and 300 seconds")
