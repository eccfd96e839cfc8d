"""Address caches stay bounded as logins churn through fresh resources.

Clients pick a new random resource at every login, so a server sees a stream of full JIDs
it will never see again. The parse, preparation and MUC recipient caches must plateau at
a few megabytes, not keep every address: ``bench/memory_cycles.py`` found RSS growing
with every login cycle while caches of 65,536 entries filled.
"""

from __future__ import annotations

import gc
import tracemalloc

from xmppd.jid import FULL_JID_CACHE, JID, resourceprep
from xmppd.muc.wire import recipient


def _login_cycles(start: int, stop: int) -> None:
    """What one login, join and leave leaves in the address caches, ``stop - start`` times."""
    for i in range(start, stop):
        user = JID.parse(f"user{i % 50}@localhost/res-{i:x}")
        resourceprep(f"res-{i:x}")
        occupant = JID.parse(f"sax@conference.localhost/nick{i}")
        JID.make(user.local, user.domain, f"res-{i:x}")
        recipient(user)
        recipient(occupant)


def test_address_caches_stop_growing_once_full() -> None:
    steps = FULL_JID_CACHE  # at least one new entry per cache per cycle
    tracemalloc.start()
    try:
        _login_cycles(0, steps)  # every cache full
        gc.collect()
        filled, _ = tracemalloc.get_traced_memory()
        _login_cycles(steps, 2 * steps)  # as many fresh addresses again
        gc.collect()
        later, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert later - filled < 512 * 1024, f"grew {(later - filled) / 1024:.0f} KiB"
    assert filled < 12 * 1024 * 1024, f"caches hold {filled / 2**20:.1f} MiB"
