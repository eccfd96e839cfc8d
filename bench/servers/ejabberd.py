"""ejabberd 23.01 from Debian, started with plain `erl` the way Debian's ejabberdctl does
(ERL_LIBS, +K/+P, -mnesia dir, -s ejabberd), but in the foreground, without a distribution
node name (no epmd needed) and without the system service."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .base import CONFIGS, Server, apt_install


class Ejabberd(Server):
    name = "ejabberd"
    port = 25222
    http_port = 25280
    component_port = 25347
    password_format = "plain"  # the reference config (and ejabberd 23.01's default)

    def install(self) -> None:
        apt_install("ejabberd")
        self.stop_system_service()

    def stop_system_service(self) -> None:
        subprocess.run(["service", "ejabberd", "stop"], capture_output=True, timeout=60)

    @property
    def config_path(self) -> Path:
        return self.dir / "ejabberd.yml"

    def configure(self) -> None:
        (self.dir / "db").mkdir(parents=True, exist_ok=True)
        (self.dir / "log").mkdir(parents=True, exist_ok=True)
        text = (CONFIGS / "ejabberd.yml").read_text()
        if self.password_format != "plain":
            old = "auth_password_format: plain"
            if old not in text:
                raise RuntimeError("ejabberd config template: auth_password_format not found")
            text = text.replace(old, f"auth_password_format: {self.password_format}")
        self.config_path.write_text(text)

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        argv, env = erl_command(self.config_path, self.dir / "db", self.dir / "log")
        env["EJABBERD_PID_PATH"] = str(self.dir / "ejabberd.pid")
        env["CONTRIB_MODULES_CONF_DIR"] = str(self.dir / "modules.d")
        return argv, env, self.dir


def erl_command(config: Path, spool: Path, logs: Path) -> tuple[list[str], dict[str, str]]:
    """argv and environment of Debian's ejabberd 23.01 in the foreground (also used by
    tests/ejabberd_fixture.py): ``config`` its ejabberd.yml, ``spool`` the Mnesia
    directory, ``logs`` where ejabberd.log and a crash dump go."""
    env = {
        # as /usr/sbin/ejabberdctl (Debian) sets them
        "ERL_LIBS": "/usr/lib/x86_64-linux-gnu",
        "ERL_MAX_PORTS": "32000",
        "ERL_MAX_ETS_TABLES": "1400",
        "ERL_CRASH_DUMP": str(logs / "erl_crash.dump"),
        "ERL_INETRC": "/etc/ejabberd/inetrc",
        "EJABBERD_CONFIG_PATH": str(config),
        "EJABBERD_LOG_PATH": str(logs / "ejabberd.log"),
    }
    argv = [
        "erl",
        "+K", "true",
        "+P", "250000",
        "-env", "ERL_CRASH_DUMP_BYTES", "0",
        "-noinput",
        "-noshell",
        "-mnesia", "dir", f'"{spool}"',
        "-ejabberd", "log_rotate_count", "0",
        "-s", "ejabberd",
    ]  # fmt: skip
    return argv, env


class EjabberdScram(Ejabberd):
    """Salted SCRAM keys stored instead of plain passwords (as xmppd and Prosody store them):
    a SCRAM login then needs no PBKDF2 on the server, a PLAIN login needs one."""

    name = "ejabberd-scram"
    password_format = "scram"
