"""Prosody 0.12 from Debian, started in the foreground with our config (no system service)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .base import CONFIGS, Server, apt_install


class Prosody(Server):
    name = "prosody"
    port = 15222
    http_port = 15280
    component_port = 15347
    template = "prosody.cfg.lua"
    data_rel = "run/prosody"  # the path the reference config uses, relative to bench/

    def install(self) -> None:
        apt_install("prosody")
        self.stop_system_service()

    def stop_system_service(self) -> None:
        # the Debian package may start its own instance (ports 5222/5269/5280); not ours to keep
        subprocess.run(["service", "prosody", "stop"], capture_output=True, timeout=60)

    @property
    def config_path(self) -> Path:
        return self.dir / "prosody.cfg.lua"

    def configure(self) -> None:
        text = (CONFIGS / self.template).read_text()
        text = text.replace(f'"{self.data_rel}/', f'"{self.dir}/')
        if str(self.dir) not in text:
            raise RuntimeError("prosody config template: data paths not found")
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        (self.dir / "certs").mkdir(parents=True, exist_ok=True)  # silences certmanager
        self.config_path.write_text(text)

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        return ["prosody", "-F", "--config", str(self.config_path)], {}, self.dir


class ProsodyPlainAuth(Prosody):
    """Plain-text password storage: separates PBKDF2 cost from the rest of the login path."""

    name = "prosody-plainauth"
    port = 15222
    http_port = 15280
    component_port = 15347
    template = "prosody-plainauth.cfg.lua"
    data_rel = "run/prosody-plainauth"
