"""XML for XMPP: a safe incremental stream parser, serialisation and error helpers."""
