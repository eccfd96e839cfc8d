"""XEP-0060 publish-subscribe as XEP-0163 PEP needs it: the sans-IO parts.

Node configuration and publish-options (:mod:`.nodeconfig`), access decisions
(:mod:`.access`), XEP-0115 capability hashes (:mod:`.caps`), the stanzas (:mod:`.wire`)
and the ``[pep]`` section (:mod:`.config`). No trio, no sockets, no database: the service
that performs them is :mod:`xmppd.services.pep`, the storage :mod:`xmppd.storage.pubsub`.
"""
