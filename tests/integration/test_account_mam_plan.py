"""A page of an account's archive is an index range scan, on SQLite and PostgreSQL.

The archive is filled in the database itself (a recursive CTE on SQLite,
``generate_series`` on PostgreSQL): ``XMPPD_MAM_PLAN_ROWS`` messages (200,000 by default;
the figures in :mod:`xmppd.storage.account_mam` were taken with 1,000,000), one owner
holding most of them, talking to three partners. The statements
:meth:`AccountArchiveStore.query` really runs are captured and ``EXPLAIN``-ed: each must
use one of the archive's indexes, and none may scan the table or sort. The page times
(p50/p99 over 30 queries) are printed for the record.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.db_fixtures import upgraded_database  # noqa: E402
from xmppd.mam.query import MamQuery  # noqa: E402
from xmppd.storage import Database  # noqa: E402
from xmppd.storage.account_mam import AccountArchiveStore  # noqa: E402

pytestmark = pytest.mark.integration

ROWS = int(os.environ.get("XMPPD_MAM_PLAN_ROWS", "200000"))
OWNER = "alice@localhost"
T0 = datetime(2026, 1, 1)

FILL = {
    "sqlite": """
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
        INSERT INTO mam_messages
            (owner, stanza_id, with_bare, with_resource, outgoing, stamp, stanza)
        SELECT CASE WHEN i % 10 = 0 THEN 'other' || (i % 7) || '@localhost'
                    ELSE 'alice@localhost' END,
               'sid' || i, 'p' || (i % 3) || '@localhost', 'r', i % 2,
               datetime('2026-01-01', '+' || i || ' seconds'),
               '<message xmlns="jabber:client"><body>' || i || '</body></message>'
        FROM n
    """,
    "postgresql": """
        INSERT INTO mam_messages
            (owner, stanza_id, with_bare, with_resource, outgoing, stamp, stanza)
        SELECT CASE WHEN i % 10 = 0 THEN 'other' || (i % 7) || '@localhost'
                    ELSE 'alice@localhost' END,
               'sid' || i, 'p' || (i % 3) || '@localhost', 'r', i % 2 = 1,
               timestamp '2026-01-01' + i * interval '1 second',
               '<message xmlns="jabber:client"><body>' || i || '</body></message>'
        FROM generate_series(1, :rows) AS i
    """,
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filled(request: pytest.FixtureRequest) -> Iterator[tuple[str, Database]]:
    with upgraded_database(request.param) as db:
        with db.transaction() as conn:
            conn.execute(sa.text(FILL[request.param]), {"rows": ROWS})
            conn.execute(sa.text("ANALYZE"))
        yield request.param, db


def _captured(db: Database, run: Any) -> list[tuple[str, Any]]:
    """The SELECTs on the archive that ``run()`` executes, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def listen(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "mam_messages" in statement:
            seen.append((statement, params))

    sa.event.listen(db.engine, "before_cursor_execute", listen)
    try:
        run()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listen)
    return seen


def _plan(kind: str, db: Database, statement: str, params: Any) -> str:
    prefix = "EXPLAIN QUERY PLAN " if kind == "sqlite" else "EXPLAIN "
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, params).all()
    return "\n".join(str(r[-1]) for r in rows)


QUERIES = {
    "last page": MamQuery(None, before="", max=50),
    "after an id": MamQuery(None, after=f"sid{ROWS // 2 + 1}", max=50),
    "with a partner": MamQuery(None, with_="p1@localhost", before="", max=50),
    "from a start": MamQuery(
        None, start=(T0 + timedelta(seconds=ROWS // 3)).replace(tzinfo=UTC), max=50
    ),
}


#: the big archive (90% of the table), and a small one among many (1/70 of it)
OWNERS = (OWNER, "other3@localhost")


@pytest.mark.parametrize("owner", OWNERS)
@pytest.mark.parametrize("name", sorted(QUERIES))
def test_a_page_is_an_index_range_scan(filled: tuple[str, Database], name: str, owner: str) -> None:
    kind, db = filled
    store = AccountArchiveStore(db)
    q = QUERIES[name]
    if name == "after an id" and owner != OWNER:  # an id of the small archive's
        middle = next(i for i in range(ROWS // 2, ROWS) if i % 10 == 0 and i % 7 == 3)
        q = MamQuery(None, after=f"sid{middle}", max=50)
    page = store.query(owner, q)
    assert len(page.messages) == 50
    statements = _captured(db, lambda: store.query(owner, q))
    assert statements
    for statement, params in statements:
        plan = _plan(kind, db, statement, params)
        print(f"\n{kind} {owner} {name}: {' | '.join(plan.splitlines()[:3])}")
        if kind == "sqlite":
            assert "USING" in plan and "INDEX" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
            assert not any(
                line.strip().startswith("SCAN") and "INDEX" not in line
                for line in plan.splitlines()
            ), plan
        else:
            assert "Index" in plan, plan
            assert "Seq Scan" not in plan and "Sort" not in plan, plan
    times = []
    for _ in range(30):
        began = time.perf_counter()
        store.query(owner, q)
        times.append(time.perf_counter() - began)
    times.sort()
    p50, p99 = statistics.median(times), times[-1]
    print(f"\n{kind} {ROWS} rows, {owner} {name}: p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms")
    assert p99 < 0.5
