"""``[pep]``: XEP-0163 personal eventing, and the limits on what a client may store there.

Sans-IO like the rest of :mod:`xmppd.pubsub`; ``xmppd.config`` holds it as ``config.pep``.
"""

from __future__ import annotations

from dataclasses import dataclass

from xmppd.settings import ConfigError


@dataclass(slots=True)
class PepConfig:
    """Each account's PEP service (XEP-0163) on its bare JID."""

    enabled: bool = True
    #: Bytes of one item's payload, serialised (avatars: XEP-0084 data is base64 in an
    #: item; 256 KiB of base64 is a 192 KiB picture). More: ``not-acceptable`` +
    #: ``<payload-too-big/>`` (XEP-0060 §7.1.3.4).
    max_payload_bytes: int = 262_144
    #: Nodes one account may have; a publish that would create one more is ``not-allowed``
    #: + ``<max-nodes-exceeded/>`` (pubsub#errors), nothing stored.
    max_nodes: int = 64
    #: Items one node keeps at most: ``pubsub#max_items`` (and ``max``) is clamped to it.
    max_items: int = 256
    #: Characters of a node name (stored as given; longer names are ``not-acceptable``).
    #: At most 256: the column, and MariaDB's index key with the owner's JID.
    max_node_length: int = 256
    #: Characters of an item id.
    max_item_id_length: int = 256
    #: Distinct XEP-0115 ``ver`` strings whose features are remembered (least recently
    #: used go first).
    caps_cache_size: int = 1000

    def validate(self) -> None:
        for key in (
            "max_payload_bytes",
            "max_nodes",
            "max_items",
            "max_node_length",
            "max_item_id_length",
            "caps_cache_size",
        ):
            if getattr(self, key) < 1:
                raise ConfigError.at(key, "must be at least 1")
        for key in ("max_node_length", "max_item_id_length"):
            if getattr(self, key) > 256:
                raise ConfigError.at(key, "at most 256 (the database column)")
