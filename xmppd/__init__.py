"""xmppd: a pure-Python XMPP server for one web community's chat."""

__version__ = "0.1.0"
