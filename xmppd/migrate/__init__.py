"""Moving a site between servers: ``xmppd import ejabberd`` and ``xmppd export``."""
