"""What a scenario gets to know about the server it measures."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Target:
    name: str  # "xmppd", "prosody", "ejabberd"
    host: str
    port: int
    domain: str
    pid: int  # the server process, for CPU and RSS readings
    users: list[tuple[str, str]]  # existing accounts (localpart, password)
    mechanism: str  # SASL mechanism for the SCRAM runs (strongest common one)
    http_port: int = 0  # BOSH at http://host:http_port/http-bind (0: none)
    component_port: int = 0  # XEP-0114 component port (0: none)
