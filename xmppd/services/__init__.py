"""Server-side handlers: disco, ping, version, roster, presence, offline messages …"""
