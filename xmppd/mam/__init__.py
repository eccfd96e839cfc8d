"""XEP-0313 message archive management shared by the rooms' and the accounts' archives.

:mod:`xmppd.mam.query` parses a query and shapes its results (both archives),
:mod:`xmppd.mam.prefs` holds an account's archiving preferences (XEP-0441),
:mod:`xmppd.mam.config` the ``[mam]`` section. All pure: no trio, no database.
"""
