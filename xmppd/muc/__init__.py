"""XEP-0045 multi-user chat: a pure room core (:mod:`room`) inside a trio service shell.

``room.py`` and the feature modules it dispatches to (presence, messages, admin, owner…,
all around :mod:`core`) import no trio and touch no socket or database: a room takes a
stanza plus ``now`` and returns what to send and what to store (:class:`out.Out`). The
:mod:`service` owns the registry of rooms, delivery (``Router.deliver_many``), batching of
archive writes and MAM queries (off the event loop, through
:class:`xmppd.storage.muc.MucStore`).
"""
