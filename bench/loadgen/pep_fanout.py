"""PEP notification fan-out (XEP-0163): one publisher, N contacts with avatar +notify caps.

The publisher (``bench0``) and N contacts (``bench1`` … ``benchN``) have mutual presence
subscriptions; the first run makes them in band (RFC 6121 §3: both sides ask and approve;
every server keeps rosters across restarts, and later runs find them in the publisher's
roster). Each contact's initial presence carries XEP-0115 caps whose features include
``urn:xmpp:avatar:metadata+notify``, and each contact answers the server's disco#info
query about that ver (:class:`xmpp.Caps`). The publisher then publishes XEP-0084 avatar
metadata items at a steady ``rate``; the item id carries the run's token and a sequence
number, and each contact notes when the notification arrives. Warm-up: items are published
until every contact has received one (the server has learnt every contact's interest), then
``duration`` seconds are measured. Only the first copy of an item per contact counts (Prosody
0.12 sends some twice: ``duplicates`` in the JSON). Latency is publish sent → notification received.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time

from . import xmpp
from .meter import Meter, percentile
from .target import Target

HEADLINE = ("notifications_per_s", "notif/s", True)
DEFAULTS = {"contacts": 200, "rate": 20.0, "duration": 10.0, "ready_timeout": 60.0}
QUICK = {"duration": 2.0}
RESTART_BEFORE_EACH = True  # 200 unavailable presences and caps state, as in MUC fan-out

NODE = "urn:xmpp:avatar:metadata"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_ROSTER = "jabber:iq:roster"
_ITEM_ID = re.compile(r"""<item\s[^>]*?id=['"]([0-9a-f]{8})([0-9a-f]{32})['"]""")
_BOTH = re.compile(r"""<item\s[^>]*subscription=['"]both['"]""")


def accounts_needed(params: dict) -> int:
    return int(params["contacts"]) + 1


def publish_iq(ident: str, item_id: str) -> str:
    """XEP-0084 §4.2 metadata publish (no ``publish-options``: the servers' node defaults)."""
    return (
        f"<iq type='set' id='{ident}'><pubsub xmlns='{NS_PUBSUB}'><publish node='{NODE}'>"
        f"<item id='{item_id}'><metadata xmlns='{NODE}'><info bytes='12345' id='{item_id}' "
        "height='64' width='64' type='image/png'/></metadata></item></publish></pubsub></iq>"
    )


async def _roster_both(client: xmpp.Client) -> int:
    client.send(f"<iq type='get' id='roster1'><query xmlns='{NS_ROSTER}'/></iq>")
    reply = await client.recv_until(lambda e: e.startswith("<iq") and attr_id_is(e, "roster1"))
    return len(_BOTH.findall(reply))


def attr_id_is(element: str, ident: str) -> bool:
    return xmpp.attr_id(element) == ident


async def _subscribe_all(pub: xmpp.Client, contacts: list[xmpp.Client], wait_s: float) -> int:
    """RFC 6121 §3.1: each side requests, each side approves on request (both online).
    Returns the publisher's count of ``both`` contacts at the end."""
    everyone = [pub, *contacts]
    seen = {"both": 0}
    for c in everyone:
        c.on_stanza = _auto_approver(c, seen if c is pub else None)
        c.send("<presence/>")
    for c in contacts:
        bare = c.jid.split("/")[0]
        pub.send(f"<presence to='{bare}' type='subscribe'/>")
        c.send(f"<presence to='{pub.jid.split('/')[0]}' type='subscribe'/>")
    deadline = time.monotonic() + wait_s
    k = 0
    while time.monotonic() < deadline and seen["both"] < len(contacts):
        await asyncio.sleep(1.0)
        k += 1
        pub.send(f"<iq type='get' id='rcheck{k}'><query xmlns='{NS_ROSTER}'/></iq>")
    await asyncio.sleep(0.5)
    for c in everyone:
        c.on_stanza = None
    return seen["both"]


def _auto_approver(client: xmpp.Client, seen: dict | None):
    def handler(element: str) -> None:
        if element.startswith("<presence") and xmpp.attr_type(element) == "subscribe":
            client.send(f"<presence to='{xmpp.attr_from(element)}' type='subscribed'/>")
        elif element.startswith("<iq") and xmpp.attr_type(element) == "set":
            client.send(f"<iq type='result' id='{xmpp.attr_id(element)}'/>")  # roster push
        elif seen is not None and element.startswith("<iq") and NS_ROSTER in element:
            seen["both"] = max(seen["both"], len(_BOTH.findall(element)))

    return handler


async def run(target: Target, params: dict) -> dict:
    n, rate = int(params["contacts"]), float(params["rate"])
    users = target.users[: n + 1]
    caps = xmpp.Caps([f"{NODE}+notify"])
    token = secrets.token_hex(4)
    sent: dict[int, float] = {}
    latencies: list[float] = []
    got_first = set()
    state = {"measuring": False, "end": float("inf"), "in_window": 0, "delivered": 0}
    state.update(stale=0, duplicates=0, caps_queries=0, errors=0, first=1 << 62)
    seen: set[tuple[int, int]] = set()
    perf = time.perf_counter
    clients: list[xmpp.Client] = []

    async def login(user: str, password: str, resource: str) -> xmpp.Client:
        client = await xmpp.connect(target.host, target.port, target.domain)
        clients.append(client)
        async with asyncio.timeout(30):
            await client.login(user, password, target.mechanism, resource)
        return client

    sem = asyncio.Semaphore(50)

    async def guarded(user: str, password: str) -> xmpp.Client:
        async with sem:
            return await login(user, password, "pep")

    try:
        pub = await login(*users[0], "pub")
        have = await _roster_both(pub)
        contacts = list(await asyncio.gather(*(guarded(u, p) for u, p in users[1:])))
        roster_s = 0.0
        if have < n:
            t0 = perf()
            have = await _subscribe_all(pub, contacts, float(params["ready_timeout"]))
            roster_s = perf() - t0
            if have < n:
                raise RuntimeError(f"only {have} of {n} mutual subscriptions after the handshake")

        def make_handler(index: int, me: xmpp.Client):
            def handler(element: str) -> None:
                if element.startswith("<message"):
                    now = perf()
                    m = _ITEM_ID.search(element)
                    if m is None or m.group(1) != token:
                        state["stale"] += 1  # e.g. the last item of an earlier run (§4.3.2)
                        return
                    got_first.add(index)
                    if state["measuring"]:
                        k = int(m.group(2), 16)
                        t = sent.get(k) if k >= state["first"] else None
                        if t is not None and (index, k) in seen:
                            state["duplicates"] += 1  # the same item to the same resource again
                        elif t is not None:  # a warm-up item arriving late does not count
                            seen.add((index, k))
                            state["delivered"] += 1
                            if now <= state["end"]:
                                state["in_window"] += 1
                            latencies.append(now - t)
                    return
                if element.startswith("<iq"):
                    reply = caps.answer(element)
                    if reply is not None:
                        state["caps_queries"] += 1
                        me.send(reply)
                    elif xmpp.attr_type(element) in ("get", "set"):
                        me.send(f"<iq type='result' id='{xmpp.attr_id(element)}'/>")
                elif element.startswith("<presence") and xmpp.attr_type(element) == "subscribe":
                    me.send(f"<presence to='{xmpp.attr_from(element)}' type='subscribed'/>")

            return handler

        def pub_handler(element: str) -> None:
            if element.startswith("<iq") and xmpp.attr_type(element) == "error":
                state["errors"] += 1
            elif element.startswith("<iq") and xmpp.attr_type(element) in ("get", "set"):
                reply = caps.answer(element)
                pub.send(reply or f"<iq type='result' id='{xmpp.attr_id(element)}'/>")

        for i, c in enumerate(contacts):
            c.on_stanza = make_handler(i, c)
        pub.on_stanza = pub_handler
        pub.send("<presence/>")
        for c in contacts:
            c.send(caps.presence())

        seq = 0

        def publish() -> None:
            nonlocal seq
            seq += 1
            sent[seq] = perf()
            pub.send(publish_iq(f"p{seq}", f"{token}{seq:032x}"))

        # warm-up: until every contact has had a notification (the server knows them all)
        t0 = perf()
        deadline = time.monotonic() + float(params["ready_timeout"])
        while len(got_first) < n and time.monotonic() < deadline:
            publish()
            await asyncio.sleep(0.25)
        ready_s = perf() - t0
        if len(got_first) < n:
            raise RuntimeError(f"only {len(got_first)} of {n} contacts got a notification")
        await asyncio.sleep(0.5)
        meter = Meter(target.pid)
        first_measured = seq + 1
        state["first"] = first_measured
        state["measuring"] = True
        meter.start()
        interval = 1.0 / rate
        start = perf()
        end = start + float(params["duration"])
        state["end"] = end
        k = 0
        while True:
            due = start + k * interval
            if due >= end:
                break
            delay = due - perf()
            if delay > 0:
                await asyncio.sleep(delay)
            publish()
            k += 1
        await asyncio.sleep(max(0.0, end - perf()))
        meter.stop()
        published = seq - first_measured + 1
        await asyncio.sleep(1.0)  # stragglers still count for latency, not for the rate
        delivered_late = state["delivered"]
        state["measuring"] = False
    finally:
        for c in clients:
            c.close()
    latencies.sort()
    in_window = sum(1 for s in range(first_measured, seq + 1) if sent[s] < end)
    return {
        "notifications_per_s": round(state["in_window"] / meter.wall, 1),
        "per_server_cpu_s": round(state["in_window"] / max(meter.server_cpu_s, 1e-9), 1),
        "published": published,
        "published_in_window": in_window,
        "delivered": delivered_late,
        "delivery_ratio": round(delivered_late / max(1, published * n), 4),
        "contacts": n,
        "rate": rate,
        "p50_ms": round(1000 * percentile(latencies, 50), 2),
        "p99_ms": round(1000 * percentile(latencies, 99), 2),
        "max_ms": round(1000 * latencies[-1], 2) if latencies else None,
        "caps_queries": state["caps_queries"],
        "stale_notifications": state["stale"],
        "duplicates": state["duplicates"],
        "errors": state["errors"],
        "warmup_s": round(ready_s, 2),
        "roster_handshake_s": round(roster_s, 2),
        **meter.as_dict(),
    }
