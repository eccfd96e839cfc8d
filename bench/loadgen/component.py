"""Component -> user messages/s: an XEP-0114 component (a bridge) talking to logged-in users.

`users` c2s clients log in; one component connects to the server's component port as
`relay.localhost` (secret `relaysecret`, configured alike on the three servers) and keeps
`window` chat messages in flight to each user: every message a user receives is answered by
the component with the next one (the component sees the delivery through a receipt-free
trick: each user echoes the body back to the component, so the round trip covers both
directions of the component link). Headline: messages delivered to users per second.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time

from . import muc, xmpp
from .meter import Meter, percentile
from .target import Target

HEADLINE = ("delivered_per_s", "msgs/s", True)
DEFAULTS = {"users": 50, "window": 10, "duration": 10.0, "warmup": 1.0}
QUICK = {"users": 10, "duration": 3.0}

COMPONENT = "relay.localhost"
SECRET = "relaysecret"
_ID = re.compile(r"""\sid=['"]([^'"]+)['"]""")
_BODY = re.compile(r"<body>([^<]*)</body>")


def accounts_needed(params: dict) -> int:
    return int(params["users"])


async def _component(target: Target) -> xmpp.Client:
    """Connect and finish the XEP-0114 handshake."""
    if not target.component_port:
        raise RuntimeError(f"{target.name}: no component port known")
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: xmpp.Client(COMPONENT), target.host, target.component_port
    )
    client.send(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
        f"xmlns:stream='http://etherx.jabber.org/streams' to='{COMPONENT}'>"
    )
    async with asyncio.timeout(10):
        header = await client.recv()
        m = _ID.search(header)
        if m is None:
            raise xmpp.XmppError(f"no stream id from the component port: {header[:200]}")
        digest = hashlib.sha1((m.group(1) + SECRET).encode()).hexdigest()  # noqa: S324 - XEP-0114
        client.send(f"<handshake>{digest}</handshake>")
        reply = await client.recv()
    if not reply.startswith("<handshake"):
        raise xmpp.XmppError(f"component handshake refused: {reply[:200]}")
    return client


async def run(target: Target, params: dict) -> dict:
    n, window = int(params["users"]), int(params["window"])
    clients: list[xmpp.Client] = []
    comp: xmpp.Client | None = None
    perf = time.perf_counter
    latencies: list[float] = []
    delivered = 0
    counting = False
    errors = 0
    try:
        clients = await muc.login_all(target, target.users[:n], "comp")
        comp = await _component(target)
        bot = f"bot@{COMPONENT}"
        sent_at: dict[str, float] = {}
        seq = iter(range(1 << 62))

        def send_next(to: str) -> None:
            body = str(next(seq))
            sent_at[body] = perf()
            comp.send(  # type: ignore[union-attr]
                f"<message from='{bot}' to='{to}' type='chat'><body>{body}</body></message>"
            )

        def user_handler(client: xmpp.Client):
            def on_stanza(el: str) -> None:
                nonlocal delivered, errors
                if not el.startswith("<message"):
                    return
                if xmpp.attr_type(el) == "error":
                    errors += 1
                    return
                m = _BODY.search(el)
                if m is None:
                    return
                t0 = sent_at.pop(m.group(1), None)
                if counting and t0 is not None:
                    delivered += 1
                    latencies.append(perf() - t0)
                # echo to the component: it answers with the next message
                client.send(f"<message to='{bot}' type='chat'><body>{m.group(1)}</body></message>")

            return on_stanza

        def comp_handler(el: str) -> None:
            nonlocal errors
            if el.startswith("<message"):
                if xmpp.attr_type(el) == "error":
                    errors += 1
                    return
                frm = xmpp_from(el)
                if frm:
                    send_next(frm)

        for c in clients:
            c.on_stanza = user_handler(c)
        comp.on_stanza = comp_handler
        for c in clients:
            for _ in range(window):
                send_next(c.jid)
        await asyncio.sleep(float(params["warmup"]))
        meter = Meter(target.pid)
        counting = True
        meter.start()
        await asyncio.sleep(float(params["duration"]))
        meter.stop()
        counting = False
    finally:
        for c in clients:
            c.close()
        if comp is not None:
            comp.close()
    latencies.sort()
    return {
        "delivered_per_s": round(delivered / max(1e-9, meter.wall), 1),
        "delivered": delivered,
        "p50_ms": round(1000 * percentile(latencies, 50), 2),
        "p99_ms": round(1000 * percentile(latencies, 99), 2),
        "errors": errors,
        **meter.as_dict(),
    }


_FROM = re.compile(r"""\sfrom=['"]([^'"]+)['"]""")


def xmpp_from(element: str) -> str:
    m = _FROM.search(element[: element.find(">")])
    return m.group(1) if m else ""
