"""IRC pieces for integration tests: a real ngircd per test, a raw-socket IRC client, the
IRC bridge as a subprocess, and a tiny fake IRC server for the faults ngircd cannot make.

ngircd runs in the foreground (``ngircd -n -f conf``) on a free port with a generated
config in the test's tmp dir; nothing is installed as a service.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import require_program
from tests.xmppd_process import free_port

ROOT = Path(__file__).resolve().parents[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


@dataclass
class Ngircd:
    tmp: Path
    port: int = field(default_factory=free_port)
    #: Also listen with TLS (a self-signed certificate for "localhost") on ``tls_port``.
    tls: bool = False
    tls_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    started_once: bool = False

    @property
    def conf(self) -> Path:
        return self.tmp / "ngircd.conf"

    def write_config(self) -> None:
        motd = self.tmp / "ngircd.motd"
        motd.write_text("test\n")
        self.conf.write_text(
            "[Global]\n"
            "Name = irc.test\n"
            "Info = xmppd test network\n"
            "Listen = 127.0.0.1\n"
            f"Ports = {self.port}\n"
            f"MotdFile = {motd}\n"
            f"PidFile = {self.tmp / 'ngircd.pid'}\n"
            f"ServerUID = {os.getuid()}\n"
            f"ServerGID = {os.getgid()}\n"
            "[Limits]\n"
            "MaxConnectionsIP = 0\n"
            "MaxNickLength = 20\n"
            "PingTimeout = 120\n"
            "PongTimeout = 20\n"
            "[Options]\n"
            "DNS = no\n"
            "Ident = no\n"
            "PAM = no\n" + self._ssl_section()
        )

    def _ssl_section(self) -> str:
        if not self.tls:
            return ""
        from xmppd.transport.tls import ensure_self_signed

        cert, key = self.tmp / "cert.pem", self.tmp / "key.pem"
        ensure_self_signed(cert, key, "localhost")
        return f"[SSL]\nCertFile = {cert}\nKeyFile = {key}\nPorts = {self.tls_port}\n"

    def start(self) -> None:
        """Start and wait until it listens. On the first start a port taken by someone
        else meanwhile is replaced by fresh ones; a restart keeps its ports."""
        binary = require_program("ngircd", "Debian package ngircd")
        attempts = 1 if self.started_once else 3
        for attempt in range(attempts):
            self.write_config()
            offset = len(self.log())
            log = (self.tmp / "ngircd.log").open("ab")
            self.proc = subprocess.Popen(
                [binary, "-n", "-f", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
            try:
                self._wait_listening(30, offset)
            except RuntimeError:
                self.stop()
                if attempt + 1 == attempts:
                    raise RuntimeError("ngircd did not start:\n" + self.log()) from None
                self.port, self.tls_port = free_port(), free_port()
                continue
            self.started_once = True
            return

    def _wait_listening(self, timeout: float, offset: int) -> None:
        """ngircd says so in its log (a bare port probe could reach whoever else took the
        port); with TLS that is after it generated its DH parameters."""
        ports = [self.port, self.tls_port] if self.tls else [self.port]
        marks = [f"Now listening on [127.0.0.1]:{p} " for p in ports]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError("ngircd exited")
            text = self.log()[offset:]  # this run's lines only (the log is appended)
            if all(m in text for m in marks):
                wait_port(self.port)
                return
            time.sleep(0.05)
        raise RuntimeError("ngircd is not listening")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        try:
            return (self.tmp / "ngircd.log").read_text(errors="replace")
        except OSError:
            return ""


def render(data: dict[str, dict[str, object]]) -> str:
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(i) for i in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines: list[str] = []
    for section, table in data.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@dataclass
class BridgeProcess:
    """``python -m bridges.irc --config FILE`` as a subprocess, like systemd runs it."""

    tmp: Path
    config: dict[str, dict[str, object]]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.tmp / "bridge.log"

    def start(self) -> None:
        path = self.tmp / "irc.toml"
        path.write_text(render(self.config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("IRCBRIDGE_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridges.irc", "--config", str(path)],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class IrcUser:
    """A raw-socket IRC client (asyncio streams): what a person on the channel sees."""

    def __init__(self, nick: str) -> None:
        self.nick = nick
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def connect(self, port: int, channel: str, timeout: float = 10.0) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.send(f"NICK {self.nick}")
        self.send(f"USER {self.nick} 0 * :test user")
        self._task = asyncio.create_task(self._read())
        await self.expect(lambda p: p[1] == "001", timeout)
        self.send(f"JOIN {channel}")
        await self.expect(lambda p: p[1] == "366", timeout)

    def send(self, line: str) -> None:
        self.writer.write(line.encode() + b"\r\n")

    async def _read(self) -> None:
        while True:
            raw = await self.reader.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("PING"):
                self.send("PONG" + line[4:])
                continue
            await self.lines.put(line)

    async def expect(self, match, timeout: float = 10.0) -> list[str]:  # type: ignore[no-untyped-def]
        """The next line whose split (prefix, command, rest…) satisfies ``match``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            line = await asyncio.wait_for(self.lines.get(), max(0.01, remaining))
            parts = split(line)
            if match(parts):
                return parts

    async def privmsgs(self, count: int, timeout: float = 15.0) -> list[str]:
        out = []
        for _ in range(count):
            out.append((await self.expect(lambda p: p[1] == "PRIVMSG", timeout))[-1])
        return out

    def drain(self) -> list[str]:
        out = []
        while not self.lines.empty():
            out.append(self.lines.get_nowait())
        return out

    async def close(self) -> None:
        try:
            self.send("QUIT :bye")
            await self.writer.drain()
            self.writer.close()
        except (ConnectionError, RuntimeError):
            pass
        if self._task is not None:
            self._task.cancel()


def split(line: str) -> list[str]:
    """[prefix, COMMAND, params…] with the trailing parameter last (prefix '' if none)."""
    prefix = ""
    if line.startswith(":"):
        prefix, _, line = line[1:].partition(" ")
    trailing = None
    if " :" in line:
        line, trailing = line.split(" :", 1)
    parts = line.split()
    out = [prefix, *parts]
    if trailing is not None:
        out.append(trailing)
    return out


class FakeIrcServer:
    """A scripted IRC server (one thread) for faults ngircd cannot be made to produce:
    closing mid-line, sending an overlong line, never answering PING.

    ``script(conn_no, sock, lines)`` runs per accepted connection; ``lines`` yields what
    the bridge sent. Every line received is recorded in ``received[conn_no]``.
    """

    def __init__(self, script) -> None:  # type: ignore[no-untyped-def]
        self.script = script
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[list[str]] = []
        self.errors: list[BaseException] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            index = len(self.received)
            self.received.append([])
            threading.Thread(target=self._run, args=(index, conn), daemon=True).start()

    def _run(self, index: int, conn: socket.socket) -> None:
        conn.settimeout(30)
        buf = b""

        def lines():  # type: ignore[no-untyped-def]
            nonlocal buf
            while True:
                while b"\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                raw, buf = buf.split(b"\n", 1)
                line = raw.rstrip(b"\r").decode("utf-8", "replace")
                self.received[index].append(line)
                yield line

        try:
            self.script(index, conn, lines())
        except (OSError, StopIteration):
            pass
        except BaseException as exc:  # reported to the test
            self.errors.append(exc)
        finally:
            conn.close()

    def connections(self) -> int:
        return len(self.received)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
