"""XEP-0045 multi-user chat: a pure room core (:mod:`room`) inside a trio service shell.

``room.py`` and the modules it uses import no trio and touch no socket or database: a
room takes a stanza plus ``now`` and returns what to send and what to store. The
:mod:`service` owns the registry of rooms, delivery, batching of archive writes and MAM
queries (off the event loop).
"""
