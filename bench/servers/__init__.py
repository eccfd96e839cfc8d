"""Servers under test. See base.Server for the life cycle."""

from __future__ import annotations

from .base import RUNNING, Server, bench_users, stop_all
from .ejabberd import Ejabberd, EjabberdScram
from .prosody import Prosody, ProsodyPlainAuth
from .xmppd import Xmppd, XmppdBaseline

SERVERS: dict[str, type[Server]] = {
    "xmppd": Xmppd,
    "xmppd-baseline": XmppdBaseline,
    "prosody": Prosody,
    "ejabberd": Ejabberd,
    "prosody-plainauth": ProsodyPlainAuth,
    "ejabberd-scram": EjabberdScram,
}
DEFAULT_SERVERS = ["xmppd", "prosody", "ejabberd"]

__all__ = ["DEFAULT_SERVERS", "RUNNING", "SERVERS", "Server", "bench_users", "stop_all"]
