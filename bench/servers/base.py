"""Life cycle of one server under test: install, configure, start pinned, ready, accounts, stop.

Every started server is tracked in RUNNING so that stop_all() (called from run.py's finally
block, signal handlers and atexit) leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from bench.loadgen import register, xmpp

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
RUN = BENCH / "run"
CONFIGS = Path(__file__).resolve().parent / "configs"
SERVER_CORE = "1"  # the load client runs on core 0
PASSWORD = "benchpass"  # throwaway loopback-only bench accounts
USER_PREFIX = "bench"

RUNNING: set[Server] = set()


def bench_users(n: int) -> list[tuple[str, str]]:
    return [(f"{USER_PREFIX}{i}", PASSWORD) for i in range(n)]


def apt_install(*packages: str) -> None:
    missing = [
        p
        for p in packages
        if subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
        ).stdout
        != "install ok installed"
    ]
    if not missing:
        return
    print(f"[bench] installing {' '.join(missing)} from Debian", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env, timeout=1200)


class Server:
    name = "server"
    port = 0
    http_port = 0  # BOSH /http-bind (0: none)
    component_port = 0  # XEP-0114, component relay.localhost / relaysecret (0: none)
    host = "127.0.0.1"
    domain = "localhost"
    accounts_offline = False  # True: accounts are created while the server is stopped

    def __init__(self) -> None:
        self.dir = RUN / self.name
        self.proc: subprocess.Popen[bytes] | None = None
        self.mechanisms: list[str] = []

    def __repr__(self) -> str:
        return f"<{self.name}>"

    # -- per-server parts -------------------------------------------------------------------
    def install(self) -> None:
        """Make sure the server's software is present."""

    def configure(self) -> None:
        """Write the config into self.dir."""

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        """argv, extra environment, working directory."""
        raise NotImplementedError

    def stop_system_service(self) -> None:
        """Stop an instance that a package install may have started."""

    def create_accounts_offline(self, users: list[tuple[str, str]]) -> dict:
        raise NotImplementedError

    def fill_archive(self, owner: str, count: int, partners: int) -> dict:
        """Give ``owner`` an archive of ``count`` messages (mam_page_1m), server stopped."""
        raise RuntimeError(f"{self.name}: no bulk archive fill for this server")

    def archive_marker_ok(self, owner: str, count: int, partners: int) -> bool:
        try:
            have = json.loads((self.dir / "archive.json").read_text())
        except (OSError, ValueError):
            return False
        return have == {"owner": owner, "count": count, "partners": partners}

    def archive_marker_write(self, owner: str, count: int, partners: int) -> None:
        marker = {"owner": owner, "count": count, "partners": partners}
        (self.dir / "archive.json").write_text(json.dumps(marker))

    # -- shared ----------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

    def start(self, timeout: float = 90.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._check_port_free()
        self.configure()
        argv, env, cwd = self.command()
        log = open(self.dir / "console.log", "ab")
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *argv],
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() kills the whole tree
        )
        log.close()
        RUNNING.add(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _check_port_free(self) -> None:
        """Refuse to start when something already listens on the c2s port: the readiness
        probe would find that other server and the run would measure it."""
        with socket.socket() as probe:
            if probe.connect_ex((self.host, self.port)) == 0:
                raise RuntimeError(
                    f"{self.name}: {self.host}:{self.port} is already in use by another process"
                    " (stop it; xmppd: BENCH_XMPPD_PORT_SHIFT=<n> moves this run's)"
                )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited during start-up; see {self.dir}/console.log"
                )
            try:
                self.mechanisms = asyncio.run(
                    xmpp.probe_mechanisms(self.host, self.port, self.domain)
                )
                return
            except (OSError, TimeoutError, xmpp.XmppError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s ({last})")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left (even if interrupted
        while waiting)."""
        proc = self.proc
        if proc is None:
            RUNNING.discard(self)
            return
        try:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers (erl_child_setup, ...)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            self.proc = None
            RUNNING.discard(self)

    def restart(self) -> None:
        self.stop()
        self.start()

    # -- accounts --------------------------------------------------------------------------
    @property
    def _marker(self) -> Path:
        return self.dir / "accounts.json"

    def accounts_present(self) -> int:
        try:
            data = json.loads(self._marker.read_text())
        except (OSError, ValueError):
            return 0
        return int(data.get("count", 0)) if data.get("password") == PASSWORD else 0

    def ensure_accounts(self, n: int) -> dict | None:
        """Create bench0..bench{n-1} unless they exist. Call while running (IBR servers) or
        stopped (accounts_offline servers)."""
        have = self.accounts_present()
        if have >= n:
            return None
        todo = bench_users(n)[have:]
        if self.accounts_offline:
            result = self.create_accounts_offline(todo)
        else:
            result = asyncio.run(register.register_many(self.host, self.port, self.domain, todo))
            if result["failed"]:
                raise RuntimeError(
                    f"{self.name}: {result['failed']} registrations failed: {result['last_error']}"
                )
        self._marker.write_text(json.dumps({"count": n, "password": PASSWORD}))
        return result

    def wipe(self) -> None:
        if self.proc is not None:
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def stop_all() -> None:
    """Stop every server this process started; a second Ctrl-C does not cut it short."""
    if not RUNNING:
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for server in list(RUNNING):
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                print(f"[bench] stopping {server.name} failed: {exc}", flush=True)
    finally:
        signal.signal(signal.SIGINT, previous)
