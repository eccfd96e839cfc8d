"""Soak xmppd with mixed clients and injected faults, or replay the security issue's
attacks under load; bounded in time, loopback only, with services of its own.

    .venv/bin/python bench/soak/run.py --minutes 3 --clients 150 --faults on
    nice -n 5 .venv/bin/python bench/soak/run.py --minutes 30 --clients 1000 --faults on
    .venv/bin/python bench/soak/run.py --attacks on --clients 50

Writes ``bench/results/soak-<stamp>.json`` and ``.png`` (``attacks-<stamp>.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.soak import report
from bench.soak.clients import Endpoint, SoakClient
from bench.soak.faults import Injector
from bench.soak.ledger import Ledger
from bench.soak.population import KINDS, make_clients, pct, wait_ready
from bench.soak.sampler import Sampler
from bench.soak.services import Stack, raise_nofile

RESULTS = Path(__file__).resolve().parents[1] / "results"


async def start_clients(
    clients: list[SoakClient],
    stop: asyncio.Event,
    quiet: asyncio.Event,
    mean: float,
    chat_share: float,
    per_s: float,
) -> list[asyncio.Task]:
    tasks = []
    for c in clients:
        c.peers = lambda: len(clients)
        tasks.append(asyncio.create_task(c.run(stop, quiet, mean, chat_share)))
        await asyncio.sleep(1.0 / per_s)
    return tasks


def counts(
    clients: list[SoakClient], ledger: Ledger, until: float, t0: float, ready: set[int]
) -> dict:
    """Per transport; the clients with losses or duplicates, with when their lost
    messages were sent (seconds after the start: line them up with the faults)."""
    per: dict[str, collections.Counter] = {k: collections.Counter() for k in KINDS}
    worst: list[dict] = []
    for c in clients:
        if not c.in_room:
            continue
        lost: list[int] = []
        row = ledger.count(c.rx, until=until, lost=lost)
        per[c.kind].update(row)
        per[c.kind]["clients"] += 1
        if row["lost"] or row["duplicated"]:
            worst.append(
                {
                    "client": c.idx,
                    "kind": c.kind,
                    **row,
                    "ready_at_end": c.idx in ready,
                    "lost_sent_at_s": [round(ledger.sent_at[g] - t0, 1) for g in lost[:20]],
                    "phase": c.phase,
                    "stats": vars(c.stats),
                }
            )
    total: collections.Counter = collections.Counter()
    for k in KINDS:
        total.update(per[k])
    worst.sort(key=lambda r: -(r["lost"] + r["duplicated"]))
    return {
        "per_transport": {k: dict(v) for k, v in per.items()},
        "total": dict(total),
        "clients_with_loss_or_duplicates": len(worst),
        "worst": worst[:20],
    }


def client_totals(clients: list[SoakClient]) -> dict:
    out: dict[str, collections.Counter] = {k: collections.Counter() for k in KINDS}
    for c in clients:
        s = vars(c.stats)
        out[c.kind].update({k: v for k, v in s.items() if isinstance(v, int)})
        out[c.kind].update({f"error:{k}": v for k, v in s["errors"].items()})
    return {k: dict(v) for k, v in out.items()}


async def soak(args: argparse.Namespace, stack: Stack) -> dict:
    ledger = Ledger()
    ledger.sample_every = max(1, args.clients // 100)
    endpoint = Endpoint("127.0.0.1", stack.xmppd.port, stack.xmppd.http_port)
    clients = make_clients(args.clients, endpoint, ledger)
    sampler = Sampler(stack.xmppd.http_port)
    events: list[dict] = []
    stop, quiet = asyncio.Event(), asyncio.Event()
    t0 = time.monotonic()
    sampler._t0 = t0
    sampler.sample(stack.xmppd_pid(), "start")

    async def sample_loop() -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), args.sample_every)
            except TimeoutError:
                row = await asyncio.to_thread(sampler.sample, stack.xmppd_pid())
                ready = sum(c.ready.is_set() for c in clients)
                print(
                    f"[soak] t={row['t']:.0f}s rss={row['rss_kib']} fds={row['fds']} "
                    f"lag_p99={row['lag_p99_s']} ready={ready}/{len(clients)} "
                    f"sent={len(ledger.sent_at)}",
                    flush=True,
                )

    sampling = asyncio.create_task(sample_loop())
    tasks = await start_clients(clients, stop, quiet, args.interval, args.chat_share, args.ramp)
    ready = await wait_ready(clients, 0.98, 180)
    warm = time.monotonic()
    warmup_s = warm - t0
    print(f"[soak] warm-up done in {warmup_s:.0f}s, {ready:.1%} ready", flush=True)
    end = t0 + args.minutes * 60
    injector = Injector(stack, clients, sampler.forget_lag_baseline)
    faulting = None
    if args.faults == "on":
        span = max(30.0, end - warm - 60)
        faulting = asyncio.create_task(injector.run(warm, span, stop))
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    if faulting is not None:
        await faulting  # a fault still running (a restart) finishes first
    quiet.set()
    quiet_at = time.monotonic()
    at_end = await wait_ready(clients, 1.0, 120)
    await asyncio.sleep(args.drain)
    final = await asyncio.to_thread(sampler.sample, stack.xmppd_pid(), "end")
    ready_at_end = {c.idx for c in clients if c.ready.is_set()}
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    sampling.cancel()
    for f in injector.log:
        events.append({"t": f["at_s"] + warmup_s, "label": f["fault"], "ok": f["ok"]})
    lags = sampler.lag_total
    summary = {
        "kind": "soak",
        "parameters": vars(args),
        "wall_s": round(time.monotonic() - t0, 1),
        "warmup_s": round(warmup_s, 1),
        "ready_share_at_end": round(at_end, 4),
        "room_messages_sent": len(ledger.sent_at),
        "room_messages_acked": sum(1 for x in ledger.echo_at if x),
        "quiet_at_s": round(quiet_at - t0, 1),
        "counts": counts(clients, ledger, quiet_at, t0, ready_at_end),
        "one_to_one": {**ledger.chat_counts(), "lost_sent_at_s_to": ledger.lost_chats(t0)},
        "clients": client_totals(clients),
        "delivery_latency_ms": {
            "p50": _ms(pct(ledger.latencies, 50)),
            "p99": _ms(pct(ledger.latencies, 99)),
            "samples": len(ledger.latencies),
        },
        "event_loop_lag_p99_s": _quantile(lags, 0.99),
        "event_loop_lag_p50_s": _quantile(lags, 0.5),
        "faults": injector.log,
        "trends_after_warmup": report.trends(sampler.samples, warmup_s),
        "final_sample": final,
        "samples": sampler.samples,
    }
    return summary


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _quantile(buckets: dict, q: float) -> float | None:
    from bench.soak.sampler import quantile

    return quantile(buckets, q)


def log_digest(text: str) -> dict:
    """The server's warnings, errors and tracebacks: how many, the first few of each."""
    lines = [ln for ln in text.splitlines() if "level=WARNING" in ln or "level=ERROR" in ln]
    kinds: collections.Counter = collections.Counter()
    first: dict[str, str] = {}
    for ln in lines:
        m = re.search(r"level=(WARNING|ERROR) logger=(\S+)(?: (event=\S+))?", ln)
        key = " ".join(g for g in m.groups() if g) if m else ln[:80]
        kinds[key] += 1
        first.setdefault(key, ln[:400])
    tracebacks = [m.start() for m in re.finditer(r"Traceback \(most recent call last\)", text)]
    return {
        "warnings": sum("level=WARNING" in ln for ln in lines),
        "errors": sum("level=ERROR" in ln for ln in lines),
        "tracebacks": len(tracebacks),
        "kinds": dict(kinds.most_common(30)),
        "examples": list(first.values())[:30],
        "traceback_examples": [text[max(0, i - 300) : i + 1500] for i in tracebacks[:3]],
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--clients", type=int, default=150)
    p.add_argument("--faults", choices=("on", "off"), default="on")
    p.add_argument("--attacks", choices=("on", "off"), default="off")
    p.add_argument(
        "--interval",
        type=float,
        default=90.0,
        help="mean seconds between one client's room messages (Poisson)",
    )
    p.add_argument(
        "--chat-share",
        type=float,
        default=0.3,
        help="chance that a tick also sends a one-to-one message",
    )
    p.add_argument("--ramp", type=float, default=25.0, help="client logins started per second")
    p.add_argument("--sample-every", type=float, default=60.0)
    p.add_argument("--drain", type=float, default=15.0)
    p.add_argument("--no-bridges", action="store_true")
    p.add_argument(
        "--settle",
        type=float,
        default=15.0,
        help="attacks: seconds after each before the 'after' figures",
    )
    p.add_argument("--only", default="", help="attacks: comma-separated names to run")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--tag", default="")
    return p.parse_args(argv)


async def main_async(args: argparse.Namespace) -> int:
    raise_nofile()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xmppd-soak-") as tmp:
        stack = Stack(
            Path(tmp),
            users=args.clients + 10,
            attack_mode=args.attacks == "on",
            irc=not args.no_bridges,
            webridge=not args.no_bridges,
        )
        try:
            await asyncio.to_thread(stack.start)
            if args.attacks == "on":
                from bench.soak.attacks import replay

                summary = await replay(args, stack)
                name = f"attacks-{stamp}{args.tag}"
            else:
                summary = await soak(args, stack)
                name = f"soak-{stamp}{args.tag}"
                report.plot(
                    args.out / f"{name}.png",
                    summary["samples"],
                    [
                        {"t": f["at_s"] + summary["warmup_s"], "label": f["fault"], "ok": f["ok"]}
                        for f in summary["faults"]
                    ],
                    f"xmppd soak: {args.clients} clients, {args.minutes:g} min, "
                    f"faults {args.faults}",
                )
            summary["server_log"] = log_digest(stack.xmppd.log())
            report.write_json(args.out / f"{name}.json", summary)
            for key in (
                "counts",
                "one_to_one",
                "delivery_latency_ms",
                "event_loop_lag_p99_s",
                "trends_after_warmup",
                "attacks",
            ):
                if key in summary:
                    print(f"[soak] {key}: {json.dumps(summary[key], default=str)}", flush=True)
            print(f"[soak] wrote {args.out / name}.json", flush=True)
        finally:
            await asyncio.to_thread(stack.close)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
