"""Run a real ``xmppd serve`` in a subprocess for integration tests.

Tests talk to it over real sockets with real clients (slixmpp, raw sockets, Debian
clients), exactly as users would. Each server gets its own temp data dir and free ports.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from xmppd.storage import Database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_toml(data: dict[str, Any]) -> str:
    """Tables per section; a list of dicts (``components=[{…}]``) becomes ``[[name]]``,
    inside a section too (``muc={"rooms": [{…}]}``: ``[[muc.rooms]]``)."""
    lines: list[str] = []

    def table_array(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(e, dict) for e in v)

    def section(name: str, table: dict[str, Any]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and not table_array(v)}
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        lines.append("")
        for k, v in table.items():
            if isinstance(v, dict):
                section(f"{name}.{k}", v)
            elif table_array(v):  # ``muc={"rooms": [{…}]}`` becomes ``[[muc.rooms]]``
                for entry in v:
                    lines.append(f"[[{name}.{k}]]")
                    lines.extend(f"{ek} = {_toml_value(ev)}" for ek, ev in entry.items())
                    lines.append("")

    for name, table in data.items():
        if isinstance(table, list):
            for entry in table:
                lines.append(f"[[{name}]]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in entry.items())
                lines.append("")
            continue
        section(name, table)
    return "\n".join(lines)


class _PortTaken(Exception):
    pass


#: (config section, key, XmppdProcess attribute) of every port a test server listens on.
_PORTS = [
    ("c2s", "port", "port"),
    ("c2s", "direct_tls_port", "tls_port"),
    ("component_listener", "port", "component_port"),
    ("http", "port", "http_port"),
    ("http", "tls_port", "https_port"),
]


@dataclass
class XmppdProcess:
    """A running server; ``port`` is plain c2s (STARTTLS), ``tls_port`` direct TLS,
    ``component_port`` the XEP-0114 listener (listening only with ``components=[…]``),
    ``http_port``/``https_port`` the HTTP listener (BOSH, WebSocket, /chat/)."""

    data_dir: Path
    config_path: Path
    port: int
    tls_port: int
    component_port: int = 0
    http_port: int = 0
    https_port: int = 0
    domain: str = "localhost"
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)
    overrides: dict[str, Any] = field(default_factory=dict)
    #: Start the server with this RLIMIT_NOFILE (soft and hard); None: inherit ours.
    nofile: int | None = None

    @property
    def database_url(self) -> str:
        db = self.overrides.get("database", {}).get("url")
        return db or f"sqlite:///{self.data_dir / 'xmppd.sqlite3'}"

    def database(self) -> Database:
        return Database(self.database_url)

    def add_user(self, localpart: str, password: str) -> str:
        db = self.database()
        try:
            db.upgrade()
            db.create_user(localpart, password)
        finally:
            db.dispose()
        return f"{localpart}@{self.domain}"

    def start(self, timeout: float = 20.0) -> None:
        # free_port() releases the port before xmppd binds it; under load another
        # process can take it meanwhile: then pick new ports and try again.
        for attempt in range(3):
            try:
                self._start_once(timeout)
                return
            except _PortTaken:
                if attempt == 2:
                    raise RuntimeError(f"xmppd could not bind its ports:\n{self.log()}") from None
                self._repick_ports()

    def _repick_ports(self) -> None:
        data = tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        for section, key, attr in _PORTS:
            if attr == "https_port" and not getattr(self, attr):
                continue
            if section in data and key in data[section] and data[section][key]:
                port = free_port()
                data[section][key] = port
                setattr(self, attr, port)
        self.config_path.write_text(render_toml(data), encoding="utf-8")

    def _start_once(self, timeout: float) -> None:
        env = dict(os.environ)
        env.pop("XMPPD_CONFIG", None)
        self.log_path = self.data_dir / "xmppd.log"
        log = self.log_path.open("ab")
        offset = log.tell()
        nofile = self.nofile

        def limit_fds() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xmppd", "--config", str(self.config_path), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=limit_fds if nofile is not None else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                if "Address already in use" in self.log()[offset:]:
                    raise _PortTaken
                raise RuntimeError(f"xmppd exited early:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return  # HTTP starts before c2s: both are up
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"xmppd did not start listening:\n{self.log()}")

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

    def restart(self) -> None:
        self.stop()
        self.start()

    def edit_config(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Rewrite the configuration file: ``change`` mutates its parsed tables in place."""
        data = tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        change(data)
        self.config_path.write_text(render_toml(data), encoding="utf-8")

    def reload(self, timeout: float = 15.0) -> str:
        """SIGHUP, then wait for the reload's outcome in the log: the ``event=reload_done``
        or ``event=reload_refused`` line (returned)."""
        assert self.proc is not None
        offset = len(self.log())
        self.proc.send_signal(signal.SIGHUP)
        return self.wait_for_log(r"event=reload_(done|refused)[^\n]*", offset, timeout)

    def wait_for_log(self, pattern: str, offset: int = 0, timeout: float = 10.0) -> str:
        """The first match of ``pattern`` in the log after ``offset`` characters, waiting
        for the server to write it."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.log()[offset:])
            if m:
                return m.group(0)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pattern!r} not logged:\n{self.log()[offset:][-3000:]}")
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"xmppd exited:\n{self.log()[-3000:]}")
            time.sleep(0.02)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def refusals(log: str, listener: str, reason: str, ip: str = "127.0.0.1") -> int:
    """How many refusals of one kind a server logged: first lines plus summaries' ``more``."""
    key = f"listener={listener} reason={reason} ip={ip}"
    first = log.count(f"event=connection_refused {key}\n")
    more = re.findall(rf"event=connection_refused_summary {re.escape(key)} more=(\d+)", log)
    return first + sum(int(n) for n in more)


def make_server(tmp: Path, **overrides: Any) -> XmppdProcess:
    """Write a config under ``tmp`` (defaults suitable for tests; ``overrides`` per section).

    ``components=[{"domain": "irc.localhost", "secret": "s"}]`` adds XEP-0114 components
    (``[[components]]``); their listener gets a free port, see ``component_port``.
    """
    port, tls_port = free_port(), free_port()
    data: dict[str, Any] = {
        "server": {"domain": "localhost", "data_dir": str(tmp), "log_level": "INFO"},
        "c2s": {
            "bind": "127.0.0.1",
            "port": port,
            "direct_tls_port": tls_port,
            "require_encryption": True,
            "allow_plain_on_loopback": True,
            "handshake_timeout": 10.0,
        },
        "component_listener": {"host": "127.0.0.1", "port": free_port()},
        "http": {"host": "127.0.0.1", "port": free_port(), "tls_port": free_port()},
    }
    for section, values in overrides.items():
        if isinstance(values, list):
            data[section] = values
        else:
            data.setdefault(section, {}).update(values)
    config_path = tmp / "xmppd.toml"
    config_path.write_text(render_toml(data), encoding="utf-8")
    return XmppdProcess(
        data_dir=tmp,
        config_path=config_path,
        port=data["c2s"]["port"],
        tls_port=data["c2s"]["direct_tls_port"],
        component_port=data["component_listener"]["port"],
        http_port=data["http"]["port"],
        https_port=data["http"]["tls_port"],
        overrides=overrides,
    )


@contextlib.contextmanager
def running_server(
    tmp: Path, *, users: tuple[str, ...] = (), **overrides: Any
) -> Iterator[XmppdProcess]:
    """A started server (``make_server`` overrides), with ``users`` (password ``secret``)."""
    server = make_server(tmp, **overrides)
    for user in users:
        server.add_user(user, "secret")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def xmppd_server(tmp_path: Path) -> Iterator[XmppdProcess]:
    """A fresh server with default settings and users alice/bob (password ``secret``)."""
    server = make_server(tmp_path)
    server.add_user("alice", "secret")
    server.add_user("bob", "secret")
    server.start()
    try:
        yield server
    finally:
        server.stop()
