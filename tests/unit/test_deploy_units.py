"""deploy/*.service: hardened, and their commands are ones our CLIs accept."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
HARDENING = {
    "NoNewPrivileges": "true",
    "ProtectSystem": "strict",
    "ProtectHome": "true",
    "PrivateTmp": "true",
    "Restart": "on-failure",
}


def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / name).read_text(encoding="utf-8"))
    return parser


@pytest.mark.parametrize("name", ["xmppd.service", "xmppd-webridge.service", "xmppd-irc.service"])
def test_units_are_hardened(name: str) -> None:
    service = unit(name)["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == value, f"{name}: {key}"
    assert service.get("User") and service.get("User") != "root"
    assert service.get("ReadWritePaths") or service.get("StateDirectory")
    assert unit(name)["Install"].get("WantedBy") == "multi-user.target"
    # A flood or leak the limits missed is stopped by the kernel, not by the host's OOM.
    assert service.get("MemoryMax", "infinity") != "infinity", f"{name}: MemoryMax"
    assert service.get("TasksMax", "infinity") != "infinity", f"{name}: TasksMax"


def test_webridge_unit_socket_directory_matches_default_config() -> None:
    from bridges.webridge.config import Config

    service = unit("xmppd-webridge.service")["Service"]
    runtime = "/run/" + service["RuntimeDirectory"]
    assert service["ReadWritePaths"] == runtime
    assert str(Path(Config().socket.path).parent) == runtime
    assert service["RuntimeDirectoryMode"] == "0750"


def test_unit_commands_parse() -> None:
    from bridges.webridge.cli import build_parser as webridge_parser
    from xmppd.cli import build_parser

    for line in ("ExecStart", "ExecStartPre"):
        argv = shlex.split(unit("xmppd-webridge.service")["Service"][line])
        assert argv[1:3] == ["-m", "bridges.webridge"]
        args = webridge_parser().parse_args(argv[3:])
        assert args.sub_config == "/etc/xmppd/webridge.toml"
        argv = shlex.split(unit("xmppd.service")["Service"][line])
        args = build_parser().parse_args(argv[1:])
        assert args.config == "/etc/xmppd/xmppd.toml"


def test_xmppd_unit_reloads_with_sighup() -> None:
    """``systemctl reload xmppd`` (e.g. from an ACME client's deploy hook) sends SIGHUP:
    the configuration and certificate are read again without dropping anyone."""
    assert unit("xmppd.service")["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"
