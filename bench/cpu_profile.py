"""Run ``xmppd`` under cProfile timed by the main thread's CPU time (``BENCH_PROFILE``).

    python bench/cpu_profile.py OUT.prof serve --config FILE

``python -m cProfile`` times by the wall clock, so on a busy machine every function seems
slower by however long the process waited for a core; the trio loop's thread CPU time does
not count those waits (nor the database threads' work). It imports ``xmppd`` from whichever
interpreter runs it, so one copy of this file profiles any checkout. The profile is written
when the server stops (SIGTERM ends ``xmppd serve`` normally).
"""

from __future__ import annotations

import cProfile
import sys
import time


def main() -> None:
    out = sys.argv[1]
    sys.argv = ["xmppd", *sys.argv[2:]]
    from xmppd.cli import main as xmppd_main

    profile = cProfile.Profile(time.thread_time)
    try:
        profile.runcall(xmppd_main)
    except SystemExit:
        pass
    finally:
        profile.dump_stats(out)


if __name__ == "__main__":
    main()
