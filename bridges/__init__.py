"""Bridges: ordinary XEP-0114 components built on xmppd's stream core (DESIGN.md).

``bridges.component`` is the reusable trio component client; ``bridges.webridge`` and
``bridges.irc`` are the two services built on it.
"""
