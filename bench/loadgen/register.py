"""Bulk account creation by in-band registration (XEP-0077) over c2s."""

from __future__ import annotations

import asyncio
import time

from . import xmpp


async def _worker(
    host: str, port: int, domain: str, todo: list[tuple[str, str]], out: dict
) -> None:
    client: xmpp.Client | None = None
    n = 0
    for user, password in todo:
        for _attempt in range(3):
            try:
                if client is None or client.closed:
                    client = await xmpp.connect(host, port, domain)
                    async with asyncio.timeout(30):
                        await client.open_stream()
                n += 1
                ident = f"reg{n}"
                client.send(
                    f"<iq type='set' id='{ident}'><query xmlns='jabber:iq:register'>"
                    f"<username>{user}</username><password>{password}</password></query></iq>"
                )
                async with asyncio.timeout(30):
                    reply = await client.recv_until(lambda e, i=ident: xmpp.attr_id(e) == i)
                if xmpp.attr_type(reply) == "result":
                    out["created"] += 1
                elif "conflict" in reply:
                    out["existed"] += 1
                else:
                    raise xmpp.XmppError(f"registration refused: {reply[:300]}")
                break
            except (OSError, TimeoutError, xmpp.XmppError) as exc:
                out["last_error"] = str(exc)[:300]
                if client is not None:
                    client.close()
                client = None
        else:
            out["failed"] += 1
    if client is not None:
        client.close()


async def register_many(
    host: str, port: int, domain: str, accounts: list[tuple[str, str]], concurrency: int = 25
) -> dict:
    out = {"created": 0, "existed": 0, "failed": 0, "last_error": ""}
    t0 = time.perf_counter()
    chunks = [accounts[i::concurrency] for i in range(concurrency)]
    async with asyncio.timeout(max(120, len(accounts) / 10)):
        await asyncio.gather(*(_worker(host, port, domain, c, out) for c in chunks if c))
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["per_s"] = round(len(accounts) / max(out["seconds"], 1e-9), 1)
    return out
