"""Authentication backends behind one interface (see :mod:`xmppd.auth.base`)."""
