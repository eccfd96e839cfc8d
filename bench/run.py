#!/usr/bin/env python3
"""Side-by-side benchmarks: xmppd vs Prosody vs ejabberd in one run.

    .venv/bin/python bench/run.py                       # everything, 3 repetitions
    .venv/bin/python bench/run.py --quick               # smoke run, about a minute
    .venv/bin/python bench/run.py --servers prosody,ejabberd --scenarios logins,messages

Servers run one at a time, pinned to core 1; this process (the load client) pins itself to
core 0. Results (JSON + Markdown, medians and ratios) go to bench/results/<timestamp>/.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import datetime
import fcntl
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import DEFAULT_SCENARIOS, SCENARIOS, xmpp
from bench.loadgen.target import Target
from bench.servers import DEFAULT_SERVERS, SERVERS, Server, bench_users, stop_all
from bench.servers.base import BENCH, RUN

CLIENT_CORE = 0
CLIENT_BOUND_PCT = 90.0  # client CPU above this share of wall time: the client may be the limit


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def setup_process() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {CLIENT_CORE})
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    atexit.register(stop_all)


def take_lock(wait_s: float):
    """One bench run at a time: runs share ports and bench/run/. Waits (bounded) for the lock."""
    RUN.mkdir(parents=True, exist_ok=True)
    handle = open(RUN / "bench.lock", "a+")
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                log("another bench run still holds bench/run/bench.lock; giving up")
                sys.exit(75)
            if not told:
                log(f"another bench run is in progress; waiting up to {wait_s:.0f} s")
                told = True
            time.sleep(2)
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"comma list from {', '.join(SERVERS)} (default: %(default)s)",
    )
    p.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma list from {', '.join(SCENARIOS)} (default: all)",
    )
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3, quick 1)")
    p.add_argument(
        "--alternate",
        action="store_true",
        help="repetitions in rounds: each round runs every server once, the order reversed "
        "every round (A B, B A, ...), so drift in the machine's load falls on both alike",
    )
    p.add_argument("--quick", action="store_true", help="short smoke run")
    p.add_argument("--duration", type=float, help="seconds per timed scenario run")
    p.add_argument("--workers", type=int, help="concurrent login workers (default 50)")
    p.add_argument("--pairs", type=int, help="message pairs (default 50)")
    p.add_argument("--window", type=int, help="messages in flight per direction and pair")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario parameter wherever it exists (e.g. connections=2000)",
    )
    p.add_argument(
        "--mechanism",
        default="auto",
        help="SASL mechanism for SCRAM runs; auto = strongest offered by all servers",
    )
    p.add_argument("--fresh", action="store_true", help="wipe bench/run/<server> first")
    p.add_argument("--out", type=Path, help="results folder (default bench/results/<timestamp>)")
    p.add_argument(
        "--lock-wait",
        type=float,
        default=1800.0,
        help="seconds to wait for another bench run to finish (default %(default)s)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=90.0,
        help="stop starting new runs after this long (default %(default)s)",
    )
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in args.servers:
        if s not in SERVERS:
            p.error(f"unknown server {s}")
    for s in args.scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s}")
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    return args


def scenario_params(args: argparse.Namespace) -> dict[str, dict]:
    extra = {k: getattr(args, k) for k in ("duration", "workers", "pairs", "window")}
    extra = {k: v for k, v in extra.items() if v is not None}
    for item in args.set:
        key, _, value = item.partition("=")
        extra[key.strip()] = value.strip()
    return {name: SCENARIOS[name].resolved(args.quick, extra) for name in args.scenarios}


def prepare(server: Server, accounts: int, fresh: bool) -> dict:
    """Install, create accounts, probe mechanisms; leaves the server stopped."""
    info: dict = {}
    if fresh:
        server.wipe()
    server.install()
    if server.accounts_offline:
        info["accounts"] = server.ensure_accounts(accounts)
    server.start()
    try:
        info["mechanisms"] = server.mechanisms
        if not server.accounts_offline:
            info["accounts"] = server.ensure_accounts(accounts)
    finally:
        server.stop()  # also: Prosody slows down after bulk account creation until restarted
    if info.get("accounts"):
        log(f"{server.name}: accounts created {info['accounts']}")
    return info


def rounds(servers: list[Server], args) -> list[tuple[list[Server], argparse.Namespace]]:
    """The order servers run in: all repetitions of one server after the other's, or with
    ``--alternate`` one repetition per round, A B then B A, so each gets the same share of
    whatever else the machine is doing."""
    if not args.alternate:
        return [(list(servers), args)]
    one = argparse.Namespace(**{**vars(args), "reps": 1})
    return [
        (list(servers) if i % 2 == 0 else list(reversed(servers)), one) for i in range(args.reps)
    ]


def run_scenarios(server: Server, args, params: dict, mechanism: str, deadline: float) -> dict:
    results: dict[str, list[dict]] = {}
    users = bench_users(server.accounts_present())
    for name in args.scenarios:
        spec = SCENARIOS[name]
        runs: list[dict] = []
        results[name] = runs
        fill = getattr(spec.module, "prepare_server", None)
        if fill is not None:  # e.g. bulk data written into the storage while stopped
            server.stop()
            try:
                t0 = time.monotonic()
                info = fill(server, params[name])
            except (OSError, RuntimeError) as exc:
                log(f"{server.name} {name}: left out, cannot prepare: {exc}")
                runs.append({"error": f"prepare: {exc}"[:500]})
                continue
            log(f"{server.name} {name}: prepared in {time.monotonic() - t0:.0f} s: {info}")
        server.restart()  # every scenario starts on a fresh server
        for rep in range(args.reps):
            if time.monotonic() > deadline:
                log("time budget used up; skipping the rest")
                return results
            if rep and getattr(spec.module, "RESTART_BEFORE_EACH", False):
                server.restart()
            target = Target(
                server.name,
                server.host,
                server.port,
                server.domain,
                server.pid,
                users,
                mechanism,
                http_port=server.http_port,
                component_port=server.component_port,
            )
            try:
                res = asyncio.run(spec.module.run(target, params[name]))
            except (OSError, RuntimeError, TimeoutError, xmpp.XmppError) as exc:
                res = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                log(f"{server.name} {name} #{rep + 1}: FAILED {res['error']}")
                server.restart()  # do not carry a broken state into the next run
            else:
                key, unit, _ = spec.module.HEADLINE
                log(
                    f"{server.name} {name} #{rep + 1}: {res[key]} {unit} "
                    f"(client CPU {res.get('client_cpu_pct')}%, "
                    f"server CPU {res.get('server_cpu_pct')}%, errors {res.get('errors', 0)})"
                )
            runs.append(res)
    return results


def median_run(runs: list[dict], key: str) -> dict | None:
    good = [r for r in runs if key in r]
    if not good:
        return None
    good.sort(key=lambda r: r[key])
    med = dict(good[(len(good) - 1) // 2])
    med[key] = statistics.median(r[key] for r in good)
    med["n_runs"] = len(good)
    med["all"] = [r[key] for r in good]
    return med


def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def markdown(report: dict) -> str:
    servers = report["servers"]
    out = [f"# xmppd bench — {report['started']}", ""]
    out.append(
        f"Host: {report['host']['machine']}, {report['host']['cpus']} CPUs; servers pinned "
        f"to core 1, load client to core 0. Repetitions: {report['reps']} (medians). "
        f"SCRAM mechanism: **{report['mechanism']}**." + (" QUICK run." if report["quick"] else "")
    )
    out.append("")
    ratios = [
        (a, b)
        for a, b in (("xmppd", "ejabberd"), ("xmppd", "prosody"), ("xmppd", "xmppd-baseline"))
        if a in servers and b in servers
    ]
    head = ["scenario", "unit", *servers, *(f"{a}/{b}" for a, b in ratios)]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in report["scenarios"]:
        spec = SCENARIOS[name]
        key, unit, higher = spec.module.HEADLINE
        vals = {s: (report["medians"][s].get(name) or {}).get(key) for s in servers}
        row = [spec.title or name, unit + ("" if higher else " (lower is better)")]
        row += [fmt(vals[s]) for s in servers]
        for a, b in ratios:
            va, vb = vals[a], vals[b]
            row.append(f"{va / vb:.2f}" if va is not None and vb else "—")
        out.append("| " + " | ".join(row) + " |")
    out += ["", "## Details (median run)", ""]
    out.append(
        "| scenario | server | value | per server CPU-s | client CPU % | server CPU % | p50 ms | "
        "p99 ms | "
        "errors | all runs | note |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in report["scenarios"]:
        key = SCENARIOS[name].module.HEADLINE[0]
        for s in servers:
            m = report["medians"][s].get(name)
            if not m:
                out.append(f"| {name} | {s} | failed | | | | | | | | |")
                continue
            note = []
            if m.get("client_cpu_pct", 0) >= CLIENT_BOUND_PCT:
                note.append("client near saturation")
            higher = SCENARIOS[name].module.HEADLINE[2]
            if higher and m.get("server_cpu_pct", 100) < CLIENT_BOUND_PCT:
                note.append("server below one full core (latency-bound or CPU contention)")
            if "mechanism" in m:
                note.append(m["mechanism"])
            if "connections" in m:
                note.append(
                    f"{m['connections']} conns, RSS {m['rss_before_kib']}→{m['rss_after_kib']} KiB"
                )
            out.append(
                f"| {name} | {s} | {fmt(m[key])} | {fmt(m.get('per_server_cpu_s'))} | "
                f"{m.get('client_cpu_pct', '')} | "
                f"{m.get('server_cpu_pct', '')} | {m.get('p50_ms', '')} | {m.get('p99_ms', '')} | "
                f"{m.get('errors', 0)} | {', '.join(fmt(v) for v in m['all'])} | "
                f"{'; '.join(note)} |"
            )
    if report.get("versions"):
        out += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items())]
    return "\n".join(out) + "\n"


def versions(names: list[str]) -> dict[str, str]:
    out = {}
    for name, pkg in (("prosody", "prosody"), ("ejabberd", "ejabberd")):
        if any(n.startswith(name) for n in names):
            r = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True
            )
            out[name] = r.stdout.strip() or "?"
    if "xmppd-baseline" in names:
        out["xmppd-baseline"] = baseline_commit()
    out["python (client)"] = platform.python_version()
    return out


def baseline_commit() -> str:
    """The commit ``BENCH_BASELINE`` holds, so a before/after report says what "before" was."""
    path = os.environ.get("BENCH_BASELINE", "")
    r = subprocess.run(
        ["git", "-C", path or ".", "log", "-1", "--format=%h %s"], capture_output=True, text=True
    )
    return f"{path} @ {r.stdout.strip()[:80] or '?'}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lock = take_lock(args.lock_wait)  # noqa: F841 - released when the process ends
    setup_process()
    params = scenario_params(args)
    accounts = max(SCENARIOS[n].module.accounts_needed(params[n]) for n in args.scenarios)
    started = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = args.out or BENCH / "results" / started
    deadline = time.monotonic() + 60 * args.max_minutes
    servers = [SERVERS[n]() for n in args.servers]
    report: dict = {
        "started": started,
        "quick": args.quick,
        "reps": args.reps,
        "servers": args.servers,
        "scenarios": args.scenarios,
        "params": params,
        "accounts": accounts,
        "host": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
        },
        "versions": versions(args.servers),
        "prepare": {},
        "runs": {},
        "medians": {},
    }
    try:
        for server in list(servers):
            log(f"{server.name}: preparing ({accounts} accounts)")
            try:
                report["prepare"][server.name] = prepare(server, accounts, args.fresh)
            except (OSError, RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
                log(f"{server.name}: cannot prepare, left out: {exc}")
                report["prepare"][server.name] = {"error": str(exc)[:1000]}
                servers.remove(server)
        if args.mechanism == "auto":
            mechanism = xmpp.pick_scram([s.mechanisms for s in servers])
        else:
            mechanism = args.mechanism
        report["mechanism"] = mechanism
        log(
            f"SCRAM runs use {mechanism} (offered: "
            + "; ".join(f"{s.name}: {' '.join(s.mechanisms)}" for s in servers)
            + ")"
        )
        for order, round_args in rounds(servers, args):
            for server in order:
                log(f"{server.name}: running {', '.join(args.scenarios)}")
                try:
                    runs = run_scenarios(server, round_args, params, mechanism, deadline)
                except (OSError, RuntimeError, TimeoutError) as exc:
                    log(f"{server.name}: aborted: {exc}")
                    report["runs"].setdefault(server.name, {})["error"] = str(exc)[:1000]
                else:
                    mine = report["runs"].setdefault(server.name, {})
                    for scenario, scenario_runs in runs.items():
                        mine.setdefault(scenario, []).extend(scenario_runs)
                finally:
                    server.stop()
    except KeyboardInterrupt:
        log("interrupted; stopping servers and writing what we have")
        report["interrupted"] = True
    finally:
        stop_all()
    for name in args.servers:
        runs = report["runs"].get(name, {})
        report["medians"][name] = {
            sc: median_run(runs.get(sc, []), SCENARIOS[sc].module.HEADLINE[0])
            for sc in args.scenarios
            if isinstance(runs.get(sc), list)
        }
    report.setdefault("mechanism", "?")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2, default=str))
    md = markdown(report)
    (out_dir / "results.md").write_text(md)
    print()
    print(md)
    log(f"results in {out_dir}")
    return 130 if report.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
