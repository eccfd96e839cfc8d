"""``[csi]``: XEP-0352 client state indication, shaped so ``xmppd.config`` holds it as
``config.csi``. Sans-IO: it imports no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from xmppd.settings import ConfigError


@dataclass(slots=True)
class CsiConfig:
    """What an inactive client's session holds back, and how much of it."""

    #: Offer ``<csi/>`` in the stream features after authentication (XEP-0352 §4.1).
    enabled: bool = True
    #: Stanzas held for one inactive session; one more flushes them all (in order).
    max_held: int = 200
    #: Bytes held for one inactive session; one more stanza over it flushes them all.
    max_held_bytes: int = 256 * 1024

    def validate(self) -> None:
        for key in ("max_held", "max_held_bytes"):
            if getattr(self, key) < 1:
                raise ConfigError.at(key, "must be at least 1")
