"""PNG plots from records: metric against GFLOPs (Pareto front) and against training compute."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def _value(rec: dict[str, Any], metric: str) -> float | None:
    v = (rec.get("metrics") or {}).get(metric)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated when both coordinates are minimised, sorted by the first."""
    front, best = [], math.inf
    for x, y in sorted(points):
        if y < best:
            front.append((x, y))
            best = y
    return front


def _styles(labels: list[str]) -> dict[str, dict[str, Any]]:
    """One colour and marker per run, shared by every panel; a legend instead of labels on the points,
    which overlap when runs have near-equal cost (k = 4, 6, 8 differ by ~10 % in GFLOPs)."""
    colours, markers = plt.get_cmap("tab10").colors, "osD^v<>ph*"
    return {label: {"color": colours[i % 10], "marker": markers[(i // 10) % len(markers)]}
            for i, label in enumerate(dict.fromkeys(labels))}


def _legend_outside(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def indistinguishable(points: list[dict[str, Any]]) -> set[str]:
    """Labels off the front of the means whose interval overlaps the interval of a front point with no more
    GFLOPs: the data cannot tell them from the front (lower is better)."""
    have = [p for p in points if p["summary"].mean is not None and p["gflops"] is not None]
    front = {(x, y) for x, y in pareto_front([(p["gflops"], p["summary"].mean) for p in have])}
    on = [p for p in have if (p["gflops"], p["summary"].mean) in front]
    out = set()
    for p in have:
        if (p["gflops"], p["summary"].mean) in front or p["summary"].low is None:
            continue
        if any(f["gflops"] <= p["gflops"] and f["summary"].high is not None
               and p["summary"].low <= f["summary"].high for f in on):
            out.add(p["label"])
    return out


def pareto_plot(points: list[dict[str, Any]], metric: str, out: Path, title: str) -> int:
    """Mean over seeds vs true GFLOPs of the trained model, 95 % error bars, the front of the means, and
    hollow markers for points not distinguishable from it; returns how many configurations had no value."""
    have = [p for p in points if p["summary"].mean is not None and p["gflops"] is not None]
    style = _styles([p["label"] for p in have])
    hollow = indistinguishable(have)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for p in have:
        s = p["summary"]
        yerr = None if s.low is None else [[s.mean - s.low], [s.high - s.mean]]
        st = style[p["label"]]
        name = p["label"] + (" (smoke)" if p["smoke"] else "") + (" ~front" if p["label"] in hollow else "")
        ax.errorbar(p["gflops"], s.mean, yerr=yerr, fmt=st["marker"], color=st["color"], capsize=3, ms=6,
                    mfc="none" if p["label"] in hollow else st["color"], label=f"{name} (n={s.n})")
    front = pareto_front([(p["gflops"], p["summary"].mean) for p in have])
    if len(front) > 1:
        ax.plot(*zip(*front), "k--", lw=1, label="Pareto front of the means (lower is better)")
    _legend_outside(ax)
    ax.set_xlabel("GFLOPs per image, true count (fvcore convention)")
    ax.set_ylabel(metric)
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
        y = _value(rec, metric)
        if y is not None and rec.get("images_seen"):
            ci = (rec.get("intervals") or {}).get(metric)
            st = style[rec["label"]]
            label = rec["label"] if rec["label"] not in right.get_legend_handles_labels()[1] else None
            right.errorbar(3 * g * rec["images_seen"] / 1e6, y, yerr=None if not ci else [[y - ci[0]], [ci[1] - y]],
                           fmt=st["marker"], color=st["color"], capsize=3, ms=5, label=label)
    left.set_xlabel("training compute (PFLOP, multiply-adds)")
    left.set_ylabel("training loss")
    right.set_xlabel("training compute (PFLOP, multiply-adds)")
    right.set_ylabel(metric)
    _legend_outside(right)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
