"""Namespaces and feature names of XEP-0060, XEP-0163 and XEP-0115."""

PUBSUB = "http://jabber.org/protocol/pubsub"
OWNER = PUBSUB + "#owner"
EVENT = PUBSUB + "#event"
ERRORS = PUBSUB + "#errors"
NODE_CONFIG = PUBSUB + "#node_config"
PUBLISH_OPTIONS = PUBSUB + "#publish-options"
DATA = "jabber:x:data"
CAPS = "http://jabber.org/protocol/caps"
DELAY = "urn:xmpp:delay"

#: The XEP-0060 §10 features this PEP service really does (disco#info of an account).
FEATURES = tuple(
    PUBSUB + "#" + name
    for name in (
        "access-presence",
        "access-open",
        "access-whitelist",
        "auto-create",
        "config-node",
        "create-and-configure",
        "create-nodes",
        "delete-items",
        "delete-nodes",
        "filtered-notifications",
        "item-ids",
        "last-published",
        "multi-items",
        "persistent-items",
        "presence-notifications",
        "publish",
        "publish-options",
        "purge-nodes",
        "retract-items",
        "retrieve-default",
        "retrieve-items",
    )
)
