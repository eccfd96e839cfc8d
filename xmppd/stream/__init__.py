"""Sans-IO XMPP stream state machines: bytes and events in, bytes and events out.

Nothing in this package imports trio or touches a socket, a clock or a database
(``tests/unit/test_sansio_purity.py`` enforces it).
"""
