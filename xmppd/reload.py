"""Re-reading the configuration of a running server (SIGHUP, ``xmppd reload``).

:func:`reload_server` runs in three steps; only the first two can refuse, and a refusal
changes nothing:

1. **read** (in a worker thread): the configuration file and the environment, validated
   exactly as at start-up, and the TLS certificate and key, always read again (a renewed
   certificate keeps its file names, so an unchanged configuration may still bring one);
2. **prepare**: bind the component listener if the first ``[[components]]`` entry
   arrives (a port that cannot be bound refuses the reload);
3. **apply**: synchronously, with no ``await`` in between, so no connection, request or
   handshake sees half a reload. Each key in :data:`LIVE` that changed is copied into the
   running :class:`~xmppd.config.Config` (in place: every object holding a section sees
   it) and its part of the server is told.

Every other key that changed is reported under ``needs_restart`` and **not** applied: the
running configuration keeps its old value, so the server never believes in a value it does
not act on (a port it does not listen on, a domain it does not serve).

What the live keys do to what is already there: connections keep running. A lowered
connection cap refuses new connections only; a new TLS pair is used by new handshakes only;
CORS and proxy changes apply to the next request (and, for proxies, the next connection
accepted); a removed or re-keyed component is disconnected (see
:mod:`xmppd.transport.component` for why), configured rooms are created or reconfigured
with their occupants kept.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from xmppd.config import Config, ConfigError, load_config
from xmppd.transport import tls
from xmppd.transport.limits import total_cap

if TYPE_CHECKING:
    from xmppd.server import Server

log = logging.getLogger("xmppd.reload")


@dataclass(slots=True)
class ReloadReport:
    """What a reload found and did; no secret ever appears in it."""

    #: Dotted keys whose values differ (``components`` and ``muc.rooms`` as a whole), and
    #: ``tls.certificate`` when the certificate or key files hold another pair.
    changed: list[str] = field(default_factory=list)
    #: The changed keys now in force.
    applied: list[str] = field(default_factory=list)
    #: Changed keys only a restart applies (still at their old value in the server).
    needs_restart: list[str] = field(default_factory=list)
    #: One ``key: what changed`` line per applied change, for people.
    details: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One sentence: what was applied, what needs a restart."""
        if not self.changed:
            return "configuration reloaded: nothing changed"
        parts = []
        if self.applied:
            parts.append("applied " + ", ".join(self.applied))
        if self.needs_restart:
            parts.append("needs restart (not applied): " + ", ".join(self.needs_restart))
        return "configuration reloaded: " + "; ".join(parts)

    def as_dict(self) -> dict[str, list[str]]:
        return dataclasses.asdict(self)


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ; a table array (``[[components]]``,
    ``[[muc.rooms]]``) that changed in any way is one key."""

    def flat(obj: Any, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                out.update(flat(value, f"{prefix}{f.name}."))
            else:
                out[f"{prefix}{f.name}"] = value
        return out

    before, after = flat(old, ""), flat(new, "")
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


# ---------------------------------------------------------------------- appliers
# Each gets the server (its config already holds the new values), the values the keys
# had before, and the report; each runs once per reload however many of its keys changed.
Applier = Callable[["Server", dict[str, Any], ReloadReport], None]


def _admission(server: Server, old: dict[str, Any], report: ReloadReport) -> None:
    cfg = server.config
    server.admission.resize(cfg.c2s.max_connections_per_ip, total_cap(cfg))


def _logins(server: Server, old: dict[str, Any], report: ReloadReport) -> None:
    per_minute = server.config.limits.auth_failures_per_minute
    server.logins.set_per_minute(per_minute)
    server.components.failures.set_per_minute(per_minute)


def _component_admission(server: Server, old: dict[str, Any], report: ReloadReport) -> None:
    listener = server.config.component_listener
    server.components.admission.resize(listener.max_connections_per_ip, listener.max_connections)


def _rooms(server: Server, old: dict[str, Any], report: ReloadReport) -> None:
    if server.muc is None:
        return
    added, changed = server.muc.apply_rooms(old["muc.rooms"], server.config.muc.rooms)
    words = [f"added {', '.join(added)}"] if added else []
    words += [f"reconfigured {', '.join(changed)}"] if changed else []
    report.details.append("muc.rooms: " + ("; ".join(words) or "no room changed"))


def _components(server: Server, old: dict[str, Any], report: ReloadReport) -> None:
    changes = server.components.reconfigure(server.config.components)
    words = []
    for label, domains in (
        ("added", changes.added),
        ("removed", changes.removed),
        ("re-keyed", changes.rekeyed),
        ("muc_nicks changed", changes.changed),
    ):
        if domains:
            words.append(f"{label} {', '.join(domains)}")
    report.details.append("components: " + ("; ".join(words) or "no change"))


def _http(server: Server, old: dict[str, Any], report: ReloadReport) -> None:
    if server.http_app is not None:
        server.http_app.set_policies(server.config.http)


#: Keys a running server applies, and what applies them (None: the key's new value is all
#: it takes: the log level is set around the summary line, see _log_outcome; the TLS pair
#: is read in step 1 and swapped whenever it differs). Anything else needs a restart.
LIVE: dict[str, Applier | None] = {
    "server.log_level": None,
    "tls.cert": None,
    "tls.key": None,
    "c2s.send_timeout": None,  # read at each write
    "c2s.max_connections_per_ip": _admission,
    "limits.max_connections": _admission,
    "limits.auth_failures_per_minute": _logins,
    "component_listener.max_connections": _component_admission,
    "component_listener.max_connections_per_ip": _component_admission,
    "muc.rooms": _rooms,
    "components": _components,
    "http.cors_origins": _http,
    "http.trusted_proxies": _http,
    "http.forwarded_header": _http,
    "http.metrics_allow": _http,
}

#: Keys whose old and new values are safe and short enough to log as they are.
_SHOWN = {key for key, applier in LIVE.items() if applier not in (_rooms, _components)}


def _get(config: Config, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _set(config: Config, key: str, value: Any) -> None:
    *path, last = key.split(".")
    node: Any = config
    for part in path:
        node = getattr(node, part)
    setattr(node, last, value)


# ---------------------------------------------------------------------- the steps
def _read(path: str | None) -> tuple[Config, tls.TlsPair]:
    """Step 1, blocking: the new configuration and the TLS pair it names."""
    new = load_config(path)
    return new, tls.read_tls(new)


async def _prepare(server: Server, new: Config) -> None:
    """Step 2: bind the component listener for the first component (refusable)."""
    hub = server.components
    if new.components and hub.port is None:
        listener = server.config.component_listener
        try:
            server.listening["component"] = await hub.listen()
        except OSError as exc:
            raise ConfigError(
                f"component_listener.port: cannot listen on {listener.host}:{listener.port} "
                f"({exc.strerror or exc})"
            ) from None


def _apply(server: Server, new: Config, pair: tls.TlsPair) -> ReloadReport:
    """Step 3: no await; see the module docstring."""
    running = server.config
    report = ReloadReport(changed=changed_keys(running, new))
    live = [key for key in report.changed if key in LIVE]
    report.needs_restart = [key for key in report.changed if key not in LIVE]
    old = {key: _get(running, key) for key in live}
    for key in live:
        _set(running, key, _get(new, key))
        if key in _SHOWN:
            report.details.append(f"{key}: {_show(old[key])} -> {_show(_get(new, key))}")
    for applier in dict.fromkeys(LIVE[key] for key in live):
        if applier is not None:
            applier(server, old, report)
    report.applied = list(live)
    current = server.tls
    if current is None or pair.digest != current.digest or pair.cert_path != current.cert_path:
        server.use_tls(pair)
        report.changed.append("tls.certificate")
        report.applied.append("tls.certificate")
        report.details.append(f"tls.certificate: {pair.describe()} (new handshakes)")
    return report


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _log_outcome(report: ReloadReport, old_level: str, new_level: str) -> None:
    """The summary is logged at the more verbose of the two levels, so a reload that
    quietens the log still says what it did; then the new level holds."""
    root = logging.getLogger()
    root.setLevel(
        min(logging.getLevelName(old_level.upper()), logging.getLevelName(new_level.upper()))
    )
    for line in report.details:
        key, _, change = line.partition(": ")
        log.info("event=reload_applied key=%s change=%r", key, change)
    if report.needs_restart:
        log.warning(
            "event=reload_needs_restart keys=%s note=%s",
            ",".join(report.needs_restart),
            "changed in the file but not applied: restart xmppd to apply",
        )
    log.info(
        "event=reload_done changed=%s applied=%s needs_restart=%s",
        ",".join(report.changed) or "-",
        ",".join(report.applied) or "-",
        ",".join(report.needs_restart) or "-",
    )
    root.setLevel(new_level.upper())


async def reload_server(server: Server) -> ReloadReport:
    """Re-read the configuration and apply what can change while serving (module doc).

    Raises :class:`ConfigError` (naming the key; logged as ``event=reload_refused``) when
    the new configuration, its TLS pair or a listener it needs is unusable: nothing of it
    is applied then, and the server goes on with the configuration it had.
    """
    async with server.reload_lock:
        log.info("event=reload_started path=%s", server.config_path or "-")
        old_level = server.config.server.log_level
        try:
            new, pair = await trio.to_thread.run_sync(_read, server.config_path)
            await _prepare(server, new)
        except ConfigError as exc:
            log.error(
                "event=reload_refused error=%r note=%s",
                str(exc),
                "the running configuration is unchanged",
            )
            raise
        try:
            report = _apply(server, new, pair)
        except Exception:
            log.exception("event=reload_crashed note=%s", "applied in part; restart xmppd")
            raise
        _log_outcome(report, old_level, server.config.server.log_level)
        return report
