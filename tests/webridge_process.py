"""Run a real ``python -m bridges.webridge run`` next to a real ``xmppd serve``.

:func:`webridge_server` starts xmppd with the webridge component configured (the
``[[components]]`` entry the README documents); :class:`WebridgeProcess` starts the bridge
with its own TOML file, as systemd would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.slix import Client, login
from tests.xmppd_process import XmppdProcess, make_server, render_toml

DOMAIN = "webridge.localhost"
SECRET = "webridge-s3cret"
ROOM = "sax@conference.localhost"
NICK = "SAX"
DOMAIN2, NICK2 = "webridge2.localhost", "SAX2"
ROOT = Path(__file__).resolve().parents[1]
URL = "https://forum.example/viewtopic.php?p=123"


def webridge_server(tmp: Path, **overrides: Any) -> XmppdProcess:
    """An xmppd (not started) that accepts the webridge component and user alice.

    The room's flood limit is tighter than the default (a burst of 20, then 10/s), so a
    bridge that did not pace itself (re-sends after a reconnect included) would be refused.
    """
    overrides.setdefault(
        "muc", {"flood_burst": 20, "flood_rate": 10.0, "nick_reload_interval": 0.5}
    )
    server = make_server(
        tmp,
        components=[
            {"domain": DOMAIN, "secret": SECRET, "muc_nicks": [NICK]},
            # a second bridge for tests that need other settings next to the first
            {"domain": DOMAIN2, "secret": SECRET, "muc_nicks": [NICK2]},
        ],
        **overrides,
    )
    server.add_user("alice", "secret")
    return server


@dataclass
class WebridgeProcess:
    tmp: Path
    server: XmppdProcess
    socket_dir: Path = field(init=False)
    socket_path: Path = field(init=False)
    config_path: Path = field(init=False)
    log_path: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = None
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # AF_UNIX paths are limited to 108 bytes and pytest's tmp dirs can be long.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="wb-"))
        self.socket_path = self.socket_dir / "webridge.sock"
        self.config_path = self.tmp / "webridge.toml"
        self.log_path = self.tmp / "webridge.log"
        data: dict[str, dict[str, Any]] = {
            "xmpp": {
                "host": "127.0.0.1",
                "port": self.server.component_port,
                "domain": DOMAIN,
                "secret": SECRET,
                "room": ROOM,
                "nick": NICK,
                "reconnect_initial": 0.2,
                "reconnect_max": 1.0,
                "rejoin_interval": 0.5,
            },
            "socket": {"path": str(self.socket_path), "mode": "0600"},
            # below the room's flood limit of the test servers (see webridge_server)
            "messages": {"burst": 10, "rate": 10.0},
            "log": {"level": "INFO"},
        }
        for section, values in self.settings.items():
            data.setdefault(section, {}).update(values)
        self.config_path.write_text(render_toml(data), encoding="utf-8")

    def start(self, timeout: float = 20.0, wait_joined: bool = True) -> None:
        started = self.log().count("event=webridge_started")
        joined = self.log().count("event=room_joined")
        log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEBRIDGE_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridges.webridge", "run", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
        self.wait_log("event=webridge_started", timeout, count=started + 1)
        if wait_joined:
            self.wait_log("event=room_joined", timeout, count=joined + 1)

    def wait_log(self, text: str, timeout: float = 20.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"webridge exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not in the webridge log:\n{self.log()}")
            time.sleep(0.05)

    def send(self, data: bytes | str) -> None:
        payload = data.encode("utf-8") if isinstance(data, str) else data
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.send(payload)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def close(self) -> None:
        """Stop the bridge and remove its socket directory."""
        self.stop()
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> WebridgeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


async def occupant(server: XmppdProcess, resource: str, history: int = 0) -> Client:
    alice = await login(server, f"alice@localhost/{resource}", plugins=["xep_0045"])
    await alice.plugin["xep_0045"].join_muc_wait(
        ROOM, f"alice-{resource}", maxstanzas=history, timeout=10
    )
    return alice


async def bodies_from_sax(
    client: Client, count: int, tag: str, timeout: float = 15.0, nick: str = NICK
) -> list[str]:
    """The next ``count`` bodies from the bot that contain ``tag`` (others are skipped)."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"got only {got!r}")
        msg = await client.next_message(remaining)
        if (
            str(msg["from"]) == f"{ROOM}/{nick}"
            and msg["type"] == "groupchat"
            and tag in msg["body"]
        ):
            got.append(msg["body"])
    return got


async def quiet_for(client: Client, seconds: float, tag: str, nick: str = NICK) -> list[str]:
    """Bot bodies containing ``tag`` that arrive within ``seconds`` (expected: none)."""
    extra: list[str] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            msg = await client.next_message(remaining)
        except TimeoutError:
            break
        if str(msg["from"]) == f"{ROOM}/{nick}" and tag in (msg["body"] or ""):
            extra.append(msg["body"])
    return extra
