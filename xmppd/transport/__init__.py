"""trio shells around the sans-IO streams: listeners, connections, TLS."""
