"""MAM pages of 50 from a large archive (XEP-0313, RSM XEP-0059), p50/p99 per kind of page.

Before the first repetition the server is stopped and ``bench0``'s archive is filled to
``archive`` messages directly in its storage (:func:`prepare_server` → the server's
``fill_archive``; a marker keeps it between runs): message ``i`` (oldest first) has the
archive id ``bench-<i:08d>``, is with ``bench<1 + i % partners>@localhost`` (so a ``with``
filter matches ``archive / partners`` messages), alternates outgoing/incoming and is stamped
one second after the previous one. Then one client logs in as ``bench0`` and asks, one query
at a time, ``queries`` times each:

- ``last``: the last page, RSM ``<before/>`` (what a client opening a chat asks first);
- ``middle``: the page after a random id in the middle half, RSM ``<after>``;
- ``with``: the last page with one partner (``with`` field of the query form, §4.1.1).

Latency is the query sent → its ``<iq type='result'>`` (after the 50 result messages); each
page must bring 50 messages, else it counts as an error.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Iterator

from . import xmpp
from .meter import Meter, percentile
from .target import Target

HEADLINE = ("p50_ms", "ms", False)
DEFAULTS = {"archive": 200_000, "partners": 100, "page": 50, "queries": 100}
QUICK = {"archive": 20_000, "queries": 20}
NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
OWNER = "bench0"
BASE_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z, the first message's stamp
_QUERYID = re.compile(r"""queryid=['"]([^'"]+)['"]""")


def accounts_needed(params: dict) -> int:
    return 1


def archive_rows(
    domain: str, count: int, partners: int, start: int = 0
) -> Iterator[tuple[str, int, str, bool, str]]:
    """(archive id, epoch seconds, partner bare JID, outgoing, message XML) for each message,
    oldest first, as every server's fill writes them."""
    owner = f"{OWNER}@{domain}"
    for i in range(start, count):
        key = f"bench-{i:08d}"
        partner = f"bench{1 + i % partners}@{domain}"
        outgoing = i % 2 == 0
        frm, to = (f"{owner}/mam", partner) if outgoing else (f"{partner}/mam", owner)
        xml = (
            f'<message xmlns="jabber:client" from="{frm}" to="{to}" type="chat" id="m{i}">'
            f"<body>archived message number {i}, some text of a usual length</body></message>"
        )
        yield key, BASE_EPOCH + i, partner, outgoing, xml


def prepare_server(server, params: dict) -> dict:
    """Fill the archive (server stopped) unless the marker says it holds this one already."""
    return server.fill_archive(OWNER, int(params["archive"]), int(params["partners"]))


def query_iq(ident: str, page: int, rsm: str, with_jid: str = "") -> str:
    form = ""
    if with_jid:
        form = (
            "<x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>"
            f"<field var='with'><value>{with_jid}</value></field></x>"
        )
    return (
        f"<iq type='set' id='{ident}'><query xmlns='{NS_MAM}' queryid='{ident}'>{form}"
        f"<set xmlns='{NS_RSM}'><max>{page}</max>{rsm}</set></query></iq>"
    )


async def run(target: Target, params: dict) -> dict:
    count, partners = int(params["archive"]), int(params["partners"])
    page, queries = int(params["page"]), int(params["queries"])
    rng = random.Random(12)
    user, password = target.users[0]
    client = await xmpp.connect(target.host, target.port, target.domain)
    got: dict[str, int] = {}
    done: dict[str, asyncio.Future[str]] = {}
    lat: dict[str, list[float]] = {"last": [], "middle": [], "with": []}
    errors: list[str] = []

    def handler(element: str) -> None:
        if element.startswith("<message"):
            m = _QUERYID.search(element)
            if m:
                got[m.group(1)] = got.get(m.group(1), 0) + 1
        elif element.startswith("<iq"):
            fut = done.get(xmpp.attr_id(element))
            if fut is not None and not fut.done():
                fut.set_result(element)

    try:
        async with asyncio.timeout(30):
            await client.login(user, password, target.mechanism, "mam")
        client.on_stanza = handler
        plan = []
        for _ in range(queries):
            plan.append(("last", "<before/>", ""))
            mid = count // 4 + rng.randrange(max(1, count // 2))
            plan.append(("middle", f"<after>bench-{mid:08d}</after>", ""))
            partner = f"bench{1 + rng.randrange(partners)}@{target.domain}"
            plan.append(("with", "<before/>", partner))
        meter = Meter(target.pid)
        meter.start()
        loop = asyncio.get_running_loop()
        for n, (kind, rsm, with_jid) in enumerate(plan):
            ident = f"q{n}"
            done[ident] = loop.create_future()
            t0 = time.perf_counter()
            client.send(query_iq(ident, page, rsm, with_jid))
            async with asyncio.timeout(60):
                reply = await done[ident]
            dt = time.perf_counter() - t0
            if xmpp.attr_type(reply) != "result" or got.get(ident, 0) != page:
                errors.append(f"{kind}: {got.get(ident, 0)} messages, {reply[:300]}")
            lat[kind].append(dt)
            del done[ident]
        meter.stop()
    finally:
        client.close()
    out: dict = {}
    everything: list[float] = []
    for kind, values in lat.items():
        values.sort()
        everything += values
        out[f"{kind}_p50_ms"] = round(1000 * percentile(values, 50), 2)
        out[f"{kind}_p99_ms"] = round(1000 * percentile(values, 99), 2)
    everything.sort()
    return {
        "p50_ms": round(1000 * percentile(everything, 50), 2),
        "p99_ms": round(1000 * percentile(everything, 99), 2),
        **out,
        "archive": count,
        "queries": len(plan),
        "errors": len(errors),
        "first_errors": errors[:3],
        **meter.as_dict(),
    }
