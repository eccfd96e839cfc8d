"""xmppd from this repository (.venv/bin/xmppd serve), accounts created offline in bulk.

``xmppd-baseline`` is the same server from another checkout (``BENCH_BASELINE``, a git
worktree of an earlier commit with its own ``.venv``), so a change is measured against what
it replaces side by side in one run, under the same load and machine state.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from .base import REPO, Server

PROFILER = Path(__file__).resolve().parents[1] / "cpu_profile.py"

CONFIG = """\
[server]
domain = "localhost"
data_dir = "{data_dir}"
log_level = "WARNING"

[c2s]
bind = "127.0.0.1"
port = {port}
direct_tls_port = 0          # disabled
require_encryption = false   # plaintext PLAIN/SCRAM on loopback, as for the other two
max_connections_per_ip = 100000

[limits]
auth_failures_per_minute = 0 # off: 50 logins at once from 127.0.0.1 would pass it, as
                             # logins in flight count (none fails here); the others have none

[http]
host = "127.0.0.1"
port = {http_port}           # BOSH at /http-bind
tls_port = 0                 # disabled

[component_listener]
host = "127.0.0.1"
port = {component_port}

[[components]]
domain = "relay.localhost"
secret = "relaysecret"

{mam}[muc]
flood_burst = 0              # no per-occupant message limit (ejabberd: min_message_interval 0;
                             # Prosody 0.12 has none); default 30 + 5/s would throttle senders
"""

# One-to-one archiving off by default, as on the anchors (Prosody's config loads no mod_mam,
# ejabberd's has none): with it, `messages` and `component_messages` measure the archive
# writer (~8,000 messages/s on SQLite here, two rows each), not routing. Queries still work
# (`mam_page_1m` fills the archive directly). A baseline checkout from before [mam] existed
# gets no section: it archives nothing either.
MAM_SECTION = """\
[mam]
default = "never"            # nothing archived unless a client sets its own preferences

"""

# Runs in the venv: reads [(localpart, password), ...] as JSON on stdin.
BULK = """\
import json, sys
from xmppd.storage.database import Database
db = Database(sys.argv[1])
db.upgrade()
print(db.create_users_bulk([tuple(x) for x in json.load(sys.stdin)]))
db.dispose()
"""

# Runs in the venv: fills mam_messages for one owner with bound parameters, in batches.
FILL = """\
import sys
from datetime import UTC, datetime
from bench.loadgen.mam_page import archive_rows
from xmppd.storage.database import Database
from xmppd.storage.models import mam_messages as t
url, domain, owner, count, partners = sys.argv[1:6]
db = Database(url)
db.upgrade()
bare = f"{owner}@{domain}"
with db.transaction() as conn:
    conn.execute(t.delete().where(t.c.owner == bare))
batch = []
for key, epoch, partner, outgoing, xml in archive_rows(domain, int(count), int(partners)):
    stamp = datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)
    batch.append({"owner": bare, "stanza_id": key, "with_bare": partner,
                  "with_resource": "mam", "outgoing": outgoing, "stamp": stamp, "stanza": xml})
    if len(batch) == 20000:
        with db.transaction() as conn:
            conn.execute(t.insert(), batch)
        batch = []
if batch:
    with db.transaction() as conn:
        conn.execute(t.insert(), batch)
db.dispose()
"""


class Xmppd(Server):
    name = "xmppd"
    port = 30222
    component_port = 30347
    http_port = 30280
    accounts_offline = True

    def __init__(self) -> None:
        super().__init__()
        # BENCH_XMPPD_PORT_SHIFT=N moves xmppd's three ports by N (its config is generated;
        # for when another xmppd, not ours to stop, holds the usual ones)
        shift = int(os.environ.get("BENCH_XMPPD_PORT_SHIFT", "0"))
        self.port += shift
        self.http_port += shift
        self.component_port += shift

    @property
    def checkout(self) -> Path:
        # BENCH_CHECKOUT=DIR runs "xmppd" from another checkout with its own .venv (e.g. one
        # commit against another with this bench's scenarios and configs)
        path = os.environ.get("BENCH_CHECKOUT", "")
        return Path(path).resolve() if path else REPO

    @property
    def config_path(self) -> Path:
        return self.dir / "xmppd.toml"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.dir}/xmppd.sqlite3"

    def install(self) -> None:
        if not (self.checkout / ".venv" / "bin" / "xmppd").exists():
            raise RuntimeError(
                f"{self.name}: {self.checkout}/.venv/bin/xmppd missing (run ./run there once)"
            )

    def configure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            CONFIG.format(
                data_dir=self.dir,
                port=self.port,
                component_port=self.component_port,
                http_port=self.http_port,
                mam=MAM_SECTION if (self.checkout / "xmppd" / "mam").is_dir() else "",
            )
        )

    #: Names the variable with extra ``XMPPD_…`` settings for this server only, as
    #: ``NAME=value`` words, e.g. ``BENCH_XMPPD_ENV="XMPPD_MUC_DURABLE=false"`` to measure
    #: today's xmppd without a feature an older baseline does not have (which would refuse
    #: the variable: xmppd rejects unknown ones with its prefix).
    env_variable = "BENCH_XMPPD_ENV"

    def extra_env(self) -> dict[str, str]:
        words = os.environ.get(self.env_variable, "").split()
        pairs = [w.partition("=") for w in words]
        bad = [w for w, (_, eq, _) in zip(words, pairs, strict=True) if not eq]
        if bad:
            raise RuntimeError(f"{self.env_variable}: not NAME=value: {' '.join(bad)}")
        return {name: value for name, _, value in pairs}

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        serve = ["serve", "--config", str(self.config_path)]
        env = self.extra_env()
        profile_dir = os.environ.get("BENCH_PROFILE", "")
        if profile_dir:
            # BENCH_PROFILE=DIR profiles the server (bench/cpu_profile.py: by its event
            # loop's CPU time), one file per start (each scenario starts a fresh server):
            # DIR/<server>-<start time>.prof, written when the server stops.
            out = Path(profile_dir).resolve() / f"{self.name}-{time.time_ns()}.prof"
            out.parent.mkdir(parents=True, exist_ok=True)
            python = str(self.checkout / ".venv/bin/python")
            return [python, str(PROFILER), str(out), *serve], env, self.checkout
        return [str(self.checkout / ".venv/bin/xmppd"), *serve], env, self.checkout

    def create_accounts_offline(self, users: list[tuple[str, str]]) -> dict:
        self.configure()
        t0 = time.perf_counter()
        out = subprocess.run(
            [str(self.checkout / ".venv/bin/python"), "-c", BULK, self.db_url],
            input=json.dumps(users),
            capture_output=True,
            text=True,
            timeout=1800,
            cwd=self.checkout,
        )
        if out.returncode != 0:
            raise RuntimeError(f"xmppd bulk account creation failed: {out.stderr[-2000:]}")
        seconds = time.perf_counter() - t0
        return {
            "created": len(users),
            "seconds": round(seconds, 2),
            "per_s": round(len(users) / seconds, 1),
        }

    def fill_archive(self, owner: str, count: int, partners: int) -> dict:
        if self.archive_marker_ok(owner, count, partners):
            return {"filled": 0, "kept": count}
        self.configure()
        t0 = time.perf_counter()
        args = [self.db_url, self.domain, owner, str(count), str(partners)]
        out = subprocess.run(
            [str(self.checkout / ".venv/bin/python"), "-c", FILL, *args],
            capture_output=True,
            text=True,
            timeout=3600,
            cwd=REPO,
        )
        if out.returncode != 0:
            raise RuntimeError(f"xmppd archive fill failed: {out.stderr[-2000:]}")
        self.archive_marker_write(owner, count, partners)
        seconds = time.perf_counter() - t0
        return {"filled": count, "seconds": round(seconds, 1), "per_s": round(count / seconds)}


class XmppdBaseline(Xmppd):
    """xmppd from the checkout named by ``BENCH_BASELINE`` (before/after comparisons)."""

    name = "xmppd-baseline"
    env_variable = "BENCH_BASELINE_ENV"

    @property
    def checkout(self) -> Path:
        path = os.environ.get("BENCH_BASELINE", "")
        if not path:
            raise RuntimeError("xmppd-baseline: set BENCH_BASELINE to a checkout of xmppd")
        return Path(path).resolve()
