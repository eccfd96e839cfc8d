"""The soak's outputs: slopes of RSS and descriptors, the JSON summary and the PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def segments(samples: list[dict], after_s: float) -> list[list[dict]]:
    """Samples split by server process (a restart starts a new segment), warm-up cut."""
    out: list[list[dict]] = []
    for row in samples:
        if row["t"] < after_s or row.get("rss_kib") is None:
            continue
        if not out or out[-1][-1]["pid"] != row["pid"]:
            out.append([])
        out[-1].append(row)
    return out


def slope_per_min(rows: list[dict], key: str) -> float | None:
    """Least-squares slope of ``key`` over time, per minute (None: under 3 points)."""
    pts = [(r["t"] / 60.0, float(r[key])) for r in rows if r.get(key) is not None]
    if len(pts) < 3:
        return None
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in pts) / sxx


def trends(samples: list[dict], warmup_s: float) -> list[dict[str, Any]]:
    out = []
    for seg in segments(samples, warmup_s):
        rss, fds = slope_per_min(seg, "rss_kib"), slope_per_min(seg, "fds")
        out.append(
            {
                "pid": seg[0]["pid"],
                "from_s": seg[0]["t"],
                "to_s": seg[-1]["t"],
                "points": len(seg),
                "rss_kib_first_last": [seg[0]["rss_kib"], seg[-1]["rss_kib"]],
                "fds_first_last": [seg[0]["fds"], seg[-1]["fds"]],
                "rss_slope_kib_per_min": None if rss is None else round(rss, 1),
                "fds_slope_per_min": None if fds is None else round(fds, 2),
            }
        )
    return out


def write_json(path: Path, summary: dict) -> None:
    path.write_text(json.dumps(summary, indent=1, default=str) + "\n")


def plot(path: Path, samples: list[dict], events: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] / 60 for r in samples]
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    series = [
        ("RSS (MiB)", [None if r["rss_kib"] is None else r["rss_kib"] / 1024 for r in samples]),
        ("open fds", [r["fds"] for r in samples]),
        (
            "event-loop lag p99 (ms)",
            [None if r["lag_p99_s"] is None else r["lag_p99_s"] * 1000 for r in samples],
        ),
    ]
    for ax, (label, ys) in zip(axes, series, strict=True):
        pts = [(x, y) for x, y in zip(t, ys, strict=True) if y is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", linewidth=1)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        for ev in events:
            ax.axvline(
                ev["t"] / 60,
                color="red" if ev.get("ok", True) else "black",
                alpha=0.35,
                linestyle="--",
            )
    for ev in events:
        axes[0].annotate(
            ev["label"],
            (ev["t"] / 60, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            va="top",
            ha="right",
        )
    axes[-1].set_xlabel("minutes")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
