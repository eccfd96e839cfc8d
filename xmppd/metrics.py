"""Prometheus metrics of one server: what ``/metrics`` on the HTTP port answers.

Each :class:`~xmppd.server.Server` owns one :class:`Metrics` with its own registry (never
prometheus_client's global one), so several servers in one process (tests) never collide.
The exposition format is prometheus_client's own (:meth:`Metrics.exposition`).

Two kinds of figures:

- **events**, counted where they happen with one call each: logins, stanzas in and out,
  MUC messages, archive writes, database queries, component connects, event-loop lag.
  Stanzas and room messages are counted in plain ints (stanzas in a list indexed by the
  first byte of the element name), read at scrape time: a prometheus_client counter takes
  a lock (0.5 µs, 1.4 µs with a label lookup), and ``Session.send`` runs once per
  recipient of every fan-out;
- **state**, read at scrape time by :class:`ServerCollector` from the objects that hold
  it (sessions by transport, connections, BOSH sessions and held requests, room occupants,
  archive queue, component connection state): nothing to keep in step on the hot path.

No label takes a JID, a nick or an address (their number is unbounded). Rooms are named
only when listed in ``muc.public_history_rooms``; every other room counts as
``room="_other"``. Operation names (``op``) are function names in this code.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import trio
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

import xmppd
from xmppd.http.proxy import ClientInfo, Network, plain_address
from xmppd.xml import ns

if TYPE_CHECKING:
    from prometheus_client.context_managers import Timer

    from xmppd.server import Server

#: The ``room`` label of every room not in ``muc.public_history_rooms``.
OTHER_ROOMS = "_other"
#: Stanza counters: index by who sent or receives them.
CLIENT, COMPONENT = 0, 1
PEERS = ("client", "component")
#: The first byte of a stanza's element name (``<message``…) and its ``kind`` label.
KINDS = {ord("m"): "message", ord("p"): "presence", ord("i"): "iq"}
_TAG_BYTE = {
    "{%s}message" % ns.CLIENT: ord("m"),
    "{%s}presence" % ns.CLIENT: ord("p"),
    "{%s}iq" % ns.CLIENT: ord("i"),
}
#: Transports a session is counted under (``Session.transport``, or detached: XEP-0198
#: keeps it for resumption without a connection).
TRANSPORTS = ("tcp", "tls", "websocket", "bosh", "detached")
#: How often the event-loop watcher wakes up (seconds).
LAG_INTERVAL = 0.5
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def stanza_counts() -> list[int]:
    """Counts indexed by the first byte of a stanza's element name (see :data:`KINDS`)."""
    return [0] * 256


class Metrics:
    """The registry and the event counters of one server (state: :class:`ServerCollector`)."""

    def __init__(self, public_rooms: Iterable[str] = (), components: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        ProcessCollector(registry=registry)  # RSS, CPU seconds, open fds, start time
        PlatformCollector(registry=registry)  # python_info
        GCCollector(registry=registry)  # python_gc_*: collections and objects per generation
        Info("xmppd_build", "xmppd's version", registry=registry).info(
            {"version": xmppd.__version__}
        )
        #: [peer][first byte] -> stanzas received from clients / components.
        self.stanzas_in = [stanza_counts(), stanza_counts()]
        #: [peer][first byte] -> stanzas sent; ``Session.send`` increments the client list.
        self.stanzas_out = [stanza_counts(), stanza_counts()]
        #: What ``Session.send`` increments (``session.sent``) for every bound session.
        self.client_sent = self.stanzas_out[CLIENT]
        self.logins = Counter(
            "xmppd_logins",
            "SASL exchanges that ended, by result (success, the SASL failure condition, or "
            "rate_limited) and mechanism",
            ["result", "mechanism"],
            registry=registry,
        )
        self.public_rooms = frozenset(r.lower() for r in public_rooms)
        #: Groupchat messages per ``room`` label (a plain int per message: no lock).
        self.room_messages = dict.fromkeys((*self.public_rooms, OTHER_ROOMS), 0)
        self.archive_write_seconds = Histogram(
            "xmppd_muc_archive_write_seconds",
            "Time to write one batch of the MUC archive queue to the database",
            buckets=_DB_BUCKETS,
            registry=registry,
        )
        self.archive_write_failures = Counter(
            "xmppd_muc_archive_write_failures",
            "Archive batches whose write failed (retried; the chat goes on)",
            registry=registry,
        )
        self.db_query_seconds = Histogram(
            "xmppd_db_query_seconds",
            "Database calls from the event loop, worker-thread wait included, by operation",
            ["op"],
            buckets=_DB_BUCKETS,
            registry=registry,
        )
        self._db_ops: dict[str, Any] = {}
        self.component_connects = Counter(
            "xmppd_component_connects",
            "Accepted component handshakes, by component domain",
            ["domain"],
            registry=registry,
        )
        for domain in components:
            self.component_connects.labels(domain)
        self.loop_lag = Histogram(
            "xmppd_event_loop_lag_seconds",
            f"How late a task sleeping {LAG_INTERVAL} s woke up (time the loop spent on "
            "other work)",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )

    # ------------------------------------------------------------- events
    def stanza_in(self, tag: str, peer: int = CLIENT) -> None:
        """A stanza a client or component sent us (``tag``: its Clark name)."""
        self.stanzas_in[peer][_TAG_BYTE.get(tag, 0)] += 1

    def stanza_out(self, tag: str, peer: int = COMPONENT) -> None:
        """A stanza handed to a component (clients: ``Session.send`` counts bytes)."""
        self.stanzas_out[peer][_TAG_BYTE.get(tag, 0)] += 1

    def login(self, result: str, mechanism: str) -> None:
        self.logins.labels(result, mechanism or "none").inc()

    def muc_messages(self, room: str, count: int) -> None:
        label = room if room in self.public_rooms else OTHER_ROOMS
        self.room_messages[label] += count

    def db_query(self, fn: Callable[..., object]) -> Timer:
        """``with metrics.db_query(fn): …`` times one database call under ``op=fn's name``."""
        name = getattr(fn, "__name__", "other")
        child = self._db_ops.get(name)
        if child is None:
            child = self._db_ops[name] = self.db_query_seconds.labels(name)
        timer: Timer = child.time()
        return timer

    async def watch_loop(self, interval: float = LAG_INTERVAL) -> None:
        """Sleep ``interval`` over and over, recording how late each wake-up was: a
        callback or task that holds the loop (a slow parse, a big fan-out, blocking I/O
        by mistake) delays everyone, and shows here first."""
        while True:
            due = trio.current_time() + interval
            await trio.sleep_until(due)
            self.loop_lag.observe(max(0.0, trio.current_time() - due))

    # ------------------------------------------------------------ scraping
    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry in the format the scraper asked for (``Accept``: Prometheus text
        by default, OpenMetrics on request); (body, content type)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class ServerCollector:
    """State figures, read from the server's own objects at scrape time."""

    def __init__(self, server: Server, metrics: Metrics) -> None:
        self.server = server
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._stanzas()
        yield from self._sessions()
        yield from self._bosh()
        yield from self._muc()
        yield from self._components()
        yield from self._database()

    def _stanzas(self) -> Iterator[Metric]:
        metrics = self.metrics
        for direction, counts, doc in (
            ("received", metrics.stanzas_in, "Stanzas received, by kind and peer"),
            ("sent", metrics.stanzas_out, "Stanzas sent (one per recipient), by kind and peer"),
        ):
            family = CounterMetricFamily(f"xmppd_stanzas_{direction}", doc, labels=["kind", "peer"])
            for peer, by_byte in zip(PEERS, counts, strict=True):
                known = 0
                for byte, kind in KINDS.items():
                    family.add_metric([kind, peer], by_byte[byte])
                    known += by_byte[byte]
                family.add_metric(["other", peer], sum(by_byte) - known)
            yield family

    def _sessions(self) -> Iterator[Metric]:
        server = self.server
        counts = dict.fromkeys(TRANSPORTS, 0)
        for resources in server.router.sessions.values():
            for session in resources.values():
                key = session.transport if session.attached else "detached"
                counts[key] = counts.get(key, 0) + 1
        family = GaugeMetricFamily(
            "xmppd_sessions", "Bound client resources, by transport", labels=["transport"]
        )
        for transport, count in counts.items():
            family.add_metric([transport], count)
        yield family
        admission = server.admission
        yield GaugeMetricFamily(
            "xmppd_client_connections",
            "Client connections admitted now (c2s, direct TLS, HTTP, BOSH sessions)",
            value=admission.total_count,
        )
        yield GaugeMetricFamily(
            "xmppd_client_connections_limit",
            "The total cap on client connections (limits.max_connections or the fd budget)",
            value=admission.total,
        )

    def _bosh(self) -> Iterator[Metric]:
        app = self.server.http_app
        manager = getattr(app, "bosh", None)
        sessions = getattr(manager, "sessions", {})
        yield GaugeMetricFamily("xmppd_bosh_sessions", "BOSH sessions open", value=len(sessions))
        yield GaugeMetricFamily(
            "xmppd_bosh_held_requests",
            "BOSH requests received and not yet answered (long polls held open)",
            value=sum(conn.core.waiting for conn in sessions.values()),
        )

    def _muc(self) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "xmppd_muc_messages",
            "Groupchat messages with a body broadcast in a room (public rooms by name, the "
            "rest as _other)",
            labels=["room"],
        )
        for name, count in self.metrics.room_messages.items():
            messages.add_metric([name], count)
        yield messages
        muc = self.server.muc
        rooms = muc.rooms if muc is not None else {}
        occupants = dict.fromkeys((*self.metrics.public_rooms, OTHER_ROOMS), 0)
        public = self.metrics.public_rooms
        for name, room in rooms.items():
            occupants[name if name in public else OTHER_ROOMS] += len(room.occupants)
        family = GaugeMetricFamily(
            "xmppd_muc_occupants",
            "Room occupants (nicks), public rooms by name, the rest as _other",
            labels=["room"],
        )
        for name, count in occupants.items():
            family.add_metric([name], count)
        yield family
        yield GaugeMetricFamily("xmppd_muc_rooms", "Rooms in memory", value=len(rooms))
        yield GaugeMetricFamily(
            "xmppd_muc_archive_queue",
            "Archive and room changes waiting for the next batch write",
            value=muc.queue_depth if muc is not None else 0,
        )
        yield CounterMetricFamily(
            "xmppd_muc_archive_writes",
            "Archive and room changes written to the database",
            value=muc.written if muc is not None else 0,
        )

    def _components(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "xmppd_component_connected",
            "1 while the component of this domain is connected, else 0",
            labels=["domain"],
        )
        for domain, service in self.server.components.services.items():
            family.add_metric([domain], 1 if service.connection is not None else 0)
        yield family

    def _database(self) -> Iterator[Metric]:
        limiter = self.server.adb.limiter
        yield GaugeMetricFamily(
            "xmppd_db_threads_busy",
            "Worker threads running a database call now",
            value=limiter.borrowed_tokens,
        )
        yield GaugeMetricFamily(
            "xmppd_db_threads", "Worker threads available for database calls",
            value=limiter.total_tokens,
        )  # fmt: skip


#: What parts not wired into a server (tests, the CLI's tools) count into: never exported.
NOT_EXPORTED = Metrics()


def install(server: Server) -> Metrics:
    """The metrics of ``server``: its event counters (wired into the parts that count
    outside the server object: the database and the MUC), and its state read at scrape
    time."""
    # The text format would repeat every counter and histogram as a ``*_created`` series
    # (a start time that Prometheus stores as one more series): off, process-wide.
    disable_created_metrics()
    config = server.config
    metrics = Metrics(config.muc.public_history_rooms, [c.domain for c in config.components])
    metrics.registry.register(ServerCollector(server, metrics))  # type: ignore[arg-type]
    server.adb.metrics = metrics
    if server.muc is not None:
        server.muc.metrics = metrics
    return metrics


# ----------------------------------------------------------------- access
def parse_allow(items: Iterable[str]) -> tuple[Network, ...]:
    """``http.metrics_allow`` as networks (a plain address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def may_scrape(client: ClientInfo, peer: str, allow: Sequence[Network]) -> bool:
    """Whether ``/metrics`` answers this request: its client address (as
    :class:`~xmppd.http.proxy.ProxyPolicy` decided it) is in ``http.metrics_allow``.

    A request that came through a proxy never passes as loopback (the proxy's own
    address, or one a header claims), and counts only with the address a trusted proxy
    named, never with the proxy's own standing in for an unknown client.
    """
    address = plain_address(client.ip)
    if address is None:
        return False
    if client.proxied and (address.is_loopback or client.ip == peer):
        return False
    return any(address in net for net in allow)
