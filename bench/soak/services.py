"""The soak's own services, all on loopback and on ports of their own: a private
PostgreSQL cluster (initdb in a temp dir), xmppd, ngircd with the IRC bridge, and the
webridge. Nothing here touches the machine's PostgreSQL on 5432 or anyone's processes.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.ircd import BridgeProcess, Ngircd
from tests.webridge_process import WebridgeProcess
from tests.xmppd_process import XmppdProcess, free_port, make_server
from xmppd.storage import Database

ROOM = "sax@conference.localhost"
PASSWORD = "soakpass"  # throwaway loopback-only accounts
IRC_DOMAIN, IRC_SECRET, IRC_CHANNEL = "irc.localhost", "irc-soak", "#sax"
WB_DOMAIN, WB_SECRET = "webridge.localhost", "webridge-s3cret"


def user(i: int) -> str:
    return f"soak{i}"


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"{name} not found (Debian package postgresql)")


def _as_owner(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: then run it as the ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class Postgres:
    """A throw-away cluster: initdb into its own temp dir (owned by ``postgres`` when we
    are root), listening on 127.0.0.1:``port`` only; ``remove()`` deletes it."""

    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="xmppd-soak-pg-")))
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://soak@127.0.0.1:{self.port}/soak"

    def init(self) -> None:
        data = self.dir / "data"
        subprocess.run(
            _as_owner(
                [_pg_bin("initdb"), "-D", str(data), "-U", "soak", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.start()
        subprocess.run(
            [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "soak", "soak"],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def _ctl(self, *args: str) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c max_connections=200"
        subprocess.run(
            _as_owner(
                [
                    _pg_bin("pg_ctl"),
                    "-D",
                    str(self.dir / "data"),
                    "-l",
                    str(self.dir / "pg.log"),
                    "-o",
                    opts,
                    "-w",
                    "-t",
                    "60",
                    *args,
                ]
            ),
            check=True,
            capture_output=True,
            timeout=90,
        )

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def pid(self) -> int | None:
        try:
            return int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


@dataclass
class Stack:
    """Everything the soak talks to; ``start()`` brings it up, ``close()`` takes it down."""

    tmp: Path
    users: int
    irc: bool = True
    webridge: bool = True
    #: attack replay: a short negotiation deadline, so held-open attempts end in the window
    attack_mode: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    pg: Postgres = field(default_factory=Postgres)
    xmppd: XmppdProcess = field(init=False)
    ngircd: Ngircd | None = None
    bridge: BridgeProcess | None = None
    wb: WebridgeProcess | None = None

    @property
    def handshake_timeout(self) -> float:
        # the soak's: a thousand clients log in again at once after a server restart
        return 10.0 if self.attack_mode else 60.0

    def start(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.pg.init()
        xdir = self.tmp / "xmppd"
        xdir.mkdir()
        settings: dict[str, Any] = {
            "database": {"url": self.pg.url},
            "c2s": {
                "require_encryption": False,
                "handshake_timeout": self.handshake_timeout,
                "send_timeout": 30.0,
            },
            "limits": {"auth_failures_per_minute": 10},
            "sm": {"resume_timeout": 120},
            "muc": {"flood_burst": 30, "flood_rate": 5.0, "history_max": 200},
            "server": {"log_level": "WARNING"},
            "components": [
                {"domain": IRC_DOMAIN, "secret": IRC_SECRET, "muc_nicks": ["IRC"]},
                {"domain": WB_DOMAIN, "secret": WB_SECRET, "muc_nicks": ["SAX"]},
            ],
        }
        for section, values in self.overrides.items():
            settings.setdefault(section, {}).update(values)
        self.xmppd = make_server(xdir, **settings)
        self.xmppd.nofile = 20000
        db = Database(self.pg.url)
        try:
            db.upgrade()
            db.create_users_bulk([(user(i), PASSWORD) for i in range(self.users)])
        finally:
            db.dispose()
        self.xmppd.start(timeout=60)
        if self.irc:
            self.ngircd = Ngircd(self.tmp)
            self.ngircd.start()
            self.bridge = BridgeProcess(self.tmp, self._bridge_config())
            self.bridge.start()
        if self.webridge:
            self.wb = WebridgeProcess(self.tmp, self.xmppd)
            self.wb.start(timeout=60, wait_joined=False)

    def _bridge_config(self) -> dict[str, dict[str, object]]:
        assert self.ngircd is not None
        return {
            "xmpp": {
                "host": "127.0.0.1",
                "port": self.xmppd.component_port,
                "domain": IRC_DOMAIN,
                "secret": IRC_SECRET,
                "room": ROOM,
                "nick": "IRC",
                "state_file": str(self.tmp / "irc-state.json"),
                "reconnect_initial": 0.5,
                "reconnect_max": 5.0,
            },
            "irc": {
                "servers": [f"127.0.0.1:{self.ngircd.port}"],
                "tls": False,
                "nick": "saxjax",
                "channel": IRC_CHANNEL,
                "reconnect_floor": 0.5,
                "reconnect_initial": 0.5,
                "reconnect_max": 5.0,
            },
            "relay": {"log_level": "WARNING"},
        }

    # -- faults ------------------------------------------------------------------------
    def xmppd_kill9(self) -> None:
        assert self.xmppd.proc is not None
        self.xmppd.proc.send_signal(signal.SIGKILL)
        self.xmppd.proc.wait(30)
        self.xmppd.proc = None
        self.xmppd.start(timeout=90)

    def xmppd_sigterm(self) -> None:
        self.xmppd.stop(timeout=30)
        self.xmppd.start(timeout=90)

    def pg_restart(self) -> None:
        self.pg.restart()

    def ngircd_restart(self) -> None:
        assert self.ngircd is not None
        self.ngircd.stop()
        time.sleep(1)
        self.ngircd.start()

    def webridge_restart(self) -> None:
        assert self.wb is not None
        self.wb.stop()
        self.wb.start(timeout=60, wait_joined=False)

    def xmppd_pid(self) -> int | None:
        proc = self.xmppd.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def close(self) -> None:
        for stop in (
            lambda: self.wb and self.wb.close(),
            lambda: self.bridge and self.bridge.stop(),
            lambda: self.ngircd and self.ngircd.stop(),
            lambda: self.xmppd.stop(timeout=30),
            self.pg.stop,
            self.pg.remove,
        ):
            try:
                stop()
            except Exception as exc:  # keep stopping the others
                print(f"[soak] stopping failed: {exc}", flush=True)


def raise_nofile(limit: int = 20000) -> None:
    """The load generator holds a few thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(limit, hard) if hard != resource.RLIM_INFINITY else limit
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
