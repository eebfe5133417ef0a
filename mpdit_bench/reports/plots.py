"""PNG plots from records: metric against GFLOPs (Pareto front) and against training compute."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from mpdit_bench.evaluation import metric_table as T  # noqa: E402
from mpdit_bench.reports.verdicts import metric_value  # noqa: E402


def pareto_front(points: list[tuple[float, float]], metric: str) -> list[tuple[float, float]]:
    """The (cost, value) points that no other point beats: none has at most their cost and a better value
    (lower, or higher where ``metric`` is higher-is-better), sorted by cost."""
    sign = -1.0 if T.higher_is_better(metric) else 1.0  # minimise sign * value
    front, best = [], math.inf
    for x, y in sorted(points, key=lambda p: (p[0], sign * p[1])):  # at equal cost the better value first
        if sign * y < best:
            front.append((x, y))
            best = sign * y
    return front


def _direction(metric: str) -> str:
    return "higher is better" if T.higher_is_better(metric) else "lower is better"


def _styles(labels: list[str]) -> dict[str, dict[str, Any]]:
    """One colour and marker per run, shared by every panel; a legend instead of labels on the points,
    which overlap when runs have near-equal cost (k = 4, 6, 8 differ by ~10 % in GFLOPs)."""
    colours, markers = plt.get_cmap("tab10").colors, "osD^v<>ph*"
    return {label: {"color": colours[i % 10], "marker": markers[(i // 10) % len(markers)]}
            for i, label in enumerate(dict.fromkeys(labels))}


def _legend_outside(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _reaches(p, f, higher: bool) -> bool:
    """Whether the interval of ``p`` reaches that of ``f`` on the side where ``p`` would be better."""
    if higher:
        return p.high is not None and f.low is not None and p.high >= f.low
    return p.low is not None and f.high is not None and p.low <= f.high


def indistinguishable(points: list[dict[str, Any]], metric: str) -> set[str]:
    """Labels off the front of the means whose interval reaches the interval of a front point with no more
    GFLOPs on the better side: the data cannot tell them from the front."""
    have = [p for p in points if p["summary"].mean is not None and p["gflops"] is not None]
    front = set(pareto_front([(p["gflops"], p["summary"].mean) for p in have], metric))
    on = [p for p in have if (p["gflops"], p["summary"].mean) in front]
    higher = T.higher_is_better(metric)
    return {p["label"] for p in have if (p["gflops"], p["summary"].mean) not in front
            and any(f["gflops"] <= p["gflops"] and _reaches(p["summary"], f["summary"], higher) for f in on)}


def pareto_plot(points: list[dict[str, Any]], metric: str, out: Path, title: str) -> int:
    """Mean over seeds vs true GFLOPs of the trained model, 95 % error bars, the front of the means, and
    hollow markers for points not distinguishable from it; returns how many configurations had no value."""
    have = [p for p in points if p["summary"].mean is not None and p["gflops"] is not None]
    style = _styles([p["label"] for p in have])
    hollow = indistinguishable(have, metric)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for p in have:
        s = p["summary"]
        yerr = None if s.low is None else [[s.mean - s.low], [s.high - s.mean]]
        st = style[p["label"]]
        name = p["label"] + (" (smoke)" if p["smoke"] else "") + (" ~front" if p["label"] in hollow else "")
        ax.errorbar(p["gflops"], s.mean, yerr=yerr, fmt=st["marker"], color=st["color"], capsize=3, ms=6,
                    mfc="none" if p["label"] in hollow else st["color"], label=f"{name} (n={s.n})")
    front = pareto_front([(p["gflops"], p["summary"].mean) for p in have], metric)
    if len(front) > 1:
        ax.plot(*zip(*front), "k--", lw=1, label=f"Pareto front of the means ({_direction(metric)})")
    _legend_outside(ax)
    ax.set_xlabel("GFLOPs per image, true count (fvcore convention)")
    ax.set_ylabel(f"{T.metric(metric).label} ({_direction(metric)})")
    missing = len(points) - len(have)
    ax.set_title(title + (f"\n({missing} configuration(s) without {metric} not plotted)" if missing else ""),
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return missing


def compute_plot(records: list[dict[str, Any]], metric: str, out: Path, title: str) -> None:
    """Left: training loss against training compute (3 x GFLOPs x images); right: each run's final metric
    against it, with the 95 % interval of its evaluation as error bars."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2))
    style = _styles([rec["label"] for rec in records])
    for rec in records:
        g, curve = rec.get("gflops"), rec.get("curve") or []
        batch = (rec.get("spec") or {}).get("train", {}).get("global_batch")
        if g is None or not batch:
            continue
        xs = [3 * g * r["step"] * batch / 1e6 for r in curve if r.get("step") is not None and r.get("loss") is not None]
        ys = [r["loss"] for r in curve if r.get("step") is not None and r.get("loss") is not None]
        colour = style[rec["label"]]["color"]
        if xs:
            left.plot(xs, ys, lw=1, color=colour)
        y = metric_value(rec, metric)
        if y is not None and rec.get("images_seen"):
            ci = (rec.get("intervals") or {}).get(metric)
            st = style[rec["label"]]
            label = rec["label"] if rec["label"] not in right.get_legend_handles_labels()[1] else None
            right.errorbar(3 * g * rec["images_seen"] / 1e6, y, yerr=None if not ci else [[y - ci[0]], [ci[1] - y]],
                           fmt=st["marker"], color=st["color"], capsize=3, ms=5, label=label)
    left.set_xlabel("training compute (PFLOP, multiply-adds)")
    left.set_ylabel("training loss")
    right.set_xlabel("training compute (PFLOP, multiply-adds)")
    right.set_ylabel(T.metric(metric).label)
    _legend_outside(right)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
