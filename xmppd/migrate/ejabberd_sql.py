"""Reading an ejabberd 23.01 SQL database (MariaDB/MySQL or PostgreSQL): ``--from sql``.

Both of ejabberd's schemas are read: the default one (one virtual host per database, no
``server_host`` column: the host is given, by default xmppd's own domain) and the "new"
multi-host one (``new_sql_schema: true``, a ``server_host`` column in every table).
What the columns hold (ejabberd 23.01's ``ejabberd_auth_sql``, ``mod_roster_sql``,
``mod_muc_sql``, ``mod_mam_sql``, ``mod_offline_sql``):

- ``users``: a plain password in ``password`` with ``serverkey = ''``; SCRAM otherwise,
  base64 StoredKey in ``password`` prefixed ``sha256:`` or ``sha512:`` for those hashes
  (none for SHA-1), base64 ``serverkey`` and ``salt``, ``iterationcount``.
- ``rosterusers``: ``subscription`` B/T/F/N (both/to/from/none), ``ask`` S/O (we asked),
  I (they asked, ``askmessage`` their text), B (both), U/N (nothing pending); groups in
  ``rostergroups``.
- ``archive``: ``kind`` 'chat' (``username`` the account's localpart) or 'groupchat'
  (``username`` the room's bare JID); ``timestamp`` in microseconds is the archive id
  clients saw as stanza-id; ``peer`` the other party (for a room, the sender's real JID);
  ``nick`` the occupant's nick.
- ``muc_room.opts`` and the Mnesia dump hold the same Erlang terms: they are read by
  :mod:`xmppd.migrate.erlang_terms` and :mod:`xmppd.migrate.ejabberd_rooms`.

Every query has bound parameters only; archives are streamed with a server-side cursor.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from xmppd.migrate import model as m
from xmppd.migrate.stanzas import StanzaProblem, account_stanza, room_stanza, sender_of, stamp_of

__all__ = ["EjabberdSqlSource", "roster_states", "scram_of"]

_DRIVERS = {
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
}
_HASHES = {"sha256:": "sha256", "sha512:": "sha512"}
_ROWS_PER_FETCH = 5000


def engine_url(url: str) -> sa.URL:
    """``mysql://…`` / ``postgresql://…`` with the drivers xmppd already has."""
    parsed = sa.make_url(url)
    driver = _DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def scram_of(password: str, serverkey: str, salt: str, iterations: int) -> m.ScramKeys:
    """ejabberd's SCRAM columns as keys; ValueError if they do not decode."""
    hash_name, stored = "sha1", password
    for prefix, name in _HASHES.items():
        if password.startswith(prefix):
            hash_name, stored = name, password[len(prefix) :]
    try:
        return m.ScramKeys(
            hash_name,
            base64.b64decode(salt, validate=True),
            int(iterations),
            base64.b64decode(stored, validate=True),
            base64.b64decode(serverkey, validate=True),
        )
    except (binascii.Error, ValueError):
        raise ValueError("SCRAM columns that are not base64") from None


def roster_states(subscription: str, ask: str) -> tuple[str, bool, bool]:
    """``(subscription, ask_out, pending_in)`` from mod_roster_sql's letters."""
    states = {"B": "both", "T": "to", "F": "from", "N": "none"}
    if subscription not in states:
        raise ValueError(f"unknown subscription letter {subscription!r}")
    return states[subscription], ask in ("S", "O", "B"), ask in ("I", "B")


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    return None


class EjabberdSqlSource:
    """An ejabberd 23.01 SQL database as a :class:`~xmppd.migrate.model.Source`."""

    def __init__(self, url: str, host: str | None = None) -> None:
        self._url = engine_url(url)
        self.engine = sa.create_engine(self._url, poolclass=sa.NullPool)
        columns = {c["name"] for c in sa.inspect(self.engine).get_columns("users")}
        self.multi_host = "server_host" in columns
        if not self.multi_host and not host:
            raise ValueError("the single-host ejabberd schema needs the host it served")
        self.host = host
        shown = self._url.render_as_string(hide_password=True)
        schema = "multi-host" if self.multi_host else f"single-host ({host})"
        self.description = f"ejabberd SQL database {shown} ({schema} schema)"

    # -------------------------------------------------------------- helpers
    def _select(self, table: str, columns: str, order: str = "") -> Iterator[sa.Row[Any]]:
        """Rows of ``table`` (``server_host`` appended as ``sh``), streamed."""
        sh = ", server_host AS sh" if self.multi_host else ", :host AS sh"
        text = sa.text(f"SELECT {columns}{sh} FROM {table}{' ORDER BY ' + order if order else ''}")
        params = {} if self.multi_host else {"host": self.host}
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=_ROWS_PER_FETCH)
            yield from result.execute(text, params)

    def _jid(self, user: str, host: str) -> str:
        return f"{user}@{host}"

    def read(self, kind: m.Kind) -> Iterator[m.Record | m.Problem]:
        reader = getattr(self, "_" + kind.name.lower())
        yield from reader()

    def estimate(self, kind: m.Kind) -> int | None:
        if kind not in (m.Kind.ROOM_ARCHIVE, m.Kind.ACCOUNT_ARCHIVE):
            return None
        archive_kind = "groupchat" if kind is m.Kind.ROOM_ARCHIVE else "chat"
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT COUNT(*) FROM archive WHERE kind = :k"), {"k": archive_kind}
                ).scalar_one()
            )

    def close(self) -> None:
        self.engine.dispose()

    # -------------------------------------------------------------- kinds
    def _accounts(self) -> Iterator[m.Record | m.Problem]:
        cols = "username, password, serverkey, salt, iterationcount, created_at"
        for r in self._select("users", cols, "created_at, username"):
            jid = self._jid(r.username, r.sh)
            if not r.serverkey:
                yield m.Account(jid, password=r.password, created_at=_when(r.created_at))
                continue
            try:
                keys = scram_of(r.password, r.serverkey, r.salt, r.iterationcount)
            except ValueError as exc:
                yield m.Problem(m.Kind.ACCOUNTS, f"users {jid}", str(exc))
                continue
            yield m.Account(jid, scram=keys, created_at=_when(r.created_at))

    def _groups(self) -> dict[tuple[str, str, str], list[str]]:
        groups: dict[tuple[str, str, str], list[str]] = {}
        for g in self._select("rostergroups", "username, jid, grp"):
            groups.setdefault((g.sh, g.username, g.jid), []).append(g.grp)
        return groups

    def _rosters(self) -> Iterator[m.Record | m.Problem]:
        groups = self._groups()
        for r in self._select("rosterusers", "username, jid, nick, subscription, ask"):
            owner = self._jid(r.username, r.sh)
            try:
                sub, ask_out, pending_in = roster_states(r.subscription, r.ask)
            except ValueError as exc:
                yield m.Problem(m.Kind.ROSTERS, f"rosterusers {owner} {r.jid}", str(exc))
                continue
            if sub == "none" and pending_in and not ask_out:
                continue  # only their request: a pending subscription, not a roster item
            item_groups = tuple(groups.get((r.sh, r.username, r.jid), ()))
            yield m.RosterItem(owner, r.jid, r.nick or "", sub, ask_out, pending_in, False,
                               item_groups)  # fmt: skip

    def _pending_subscriptions(self) -> Iterator[m.Record | m.Problem]:
        from xml.sax.saxutils import escape, quoteattr

        for r in self._select("rosterusers", "username, jid, ask, askmessage"):
            if r.ask not in ("I", "B"):
                continue
            owner = self._jid(r.username, r.sh)
            status = f"<status>{escape(r.askmessage)}</status>" if r.askmessage else ""
            stanza = (f'<presence xmlns="jabber:client" type="subscribe" from={quoteattr(r.jid)} '
                      f"to={quoteattr(owner)}>{status}</presence>")  # fmt: skip
            yield m.PendingSubscription(owner, r.jid, stanza)

    def _offline(self) -> Iterator[m.Record | m.Problem]:
        for r in self._select("spool", "username, xml, created_at, seq", "seq"):
            stamp = stamp_of(r.xml) or _when(r.created_at) or datetime.now(UTC)
            yield m.OfflineMessage(self._jid(r.username, r.sh), r.xml, stamp)

    def _vcards(self) -> Iterator[m.Record | m.Problem]:
        for r in self._select("vcard", "username, vcard"):
            yield m.VCard(self._jid(r.username, r.sh), r.vcard)

    def _private_xml(self) -> Iterator[m.Record | m.Problem]:
        for r in self._select("private_storage", "username, namespace, data"):
            yield m.PrivateXml(self._jid(r.username, r.sh), r.namespace, r.data)

    def _room_records(self, wanted: type) -> Iterator[m.Record | m.Problem]:
        try:
            from xmppd.migrate.ejabberd_rooms import room_records
            from xmppd.migrate.erlang_terms import parse_term
        except ImportError:
            yield m.Problem(None, "muc_room", "reading room options needs "
                            "xmppd.migrate.ejabberd_rooms, which this xmppd lacks")  # fmt: skip
            return
        for r in self._select("muc_room", "name, host, opts, created_at", "created_at"):
            jid = f"{r.name}@{r.host}"
            try:
                opts = parse_term(r.opts)
            except ValueError as exc:
                yield m.Problem(None, f"muc_room {jid}", f"opts: {exc}")
                continue
            for record in room_records(jid, opts, created_at=_when(r.created_at)):
                if isinstance(record, wanted | m.Problem):
                    yield record

    def _rooms(self) -> Iterator[m.Record | m.Problem]:
        yield from self._room_records(m.Room)

    def _affiliations(self) -> Iterator[m.Record | m.Problem]:
        yield from self._room_records(m.Affiliation)

    def _nicks(self) -> Iterator[m.Record | m.Problem]:
        for r in self._select("muc_registered", "jid, host, nick, created_at", "created_at, nick"):
            yield m.RegisteredNick(r.host, r.jid, r.nick)

    def _archive(self, kind: str) -> Iterator[sa.Row[Any]]:
        sh = ", server_host AS sh" if self.multi_host else ", :host AS sh"
        text = sa.text(
            "SELECT username, timestamp, peer, xml, nick"
            f"{sh} FROM archive WHERE kind = :kind ORDER BY timestamp, id"
        )
        params: dict[str, Any] = {"kind": kind}
        if not self.multi_host:
            params["host"] = self.host
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=_ROWS_PER_FETCH)
            yield from result.execute(text, params)

    def _room_archive(self) -> Iterator[m.Record | m.Problem]:
        for r in self._archive("groupchat"):
            room, sid = r.username, str(r.timestamp)
            stamp = datetime.fromtimestamp(int(r.timestamp) / 1e6, UTC).replace(tzinfo=None)
            try:
                stanza = room_stanza(r.xml, room, r.nick or "", sid)
            except StanzaProblem as exc:
                yield m.Problem(m.Kind.ROOM_ARCHIVE, f"archive {room} {sid}", str(exc))
                continue
            sender = (r.peer or "").partition("/")[0]
            if not sender or sender.startswith(room.lower() + "/"):
                found = sender_of(r.xml).partition("/")[0]
                sender = found if found and found.lower() != room.lower() else ""
            yield m.RoomMessage(room, sid, stamp, r.nick or "", sender, stanza)

    def _account_archive(self) -> Iterator[m.Record | m.Problem]:
        for r in self._archive("chat"):
            owner, sid = self._jid(r.username, r.sh), str(r.timestamp)
            stamp = datetime.fromtimestamp(int(r.timestamp) / 1e6, UTC).replace(tzinfo=None)
            try:
                stanza = account_stanza(r.xml, owner, sid)
            except StanzaProblem as exc:
                yield m.Problem(m.Kind.ACCOUNT_ARCHIVE, f"archive {owner} {sid}", str(exc))
                continue
            outgoing = sender_of(r.xml).partition("/")[0].lower() == owner.lower()
            yield m.AccountMessage(owner, sid, stamp, r.peer, outgoing, stanza)
