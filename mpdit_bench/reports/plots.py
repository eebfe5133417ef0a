"""PNG plots from records: metric against GFLOPs (Pareto front), against training compute, and quality
along training (mean curves over seeds with their band). Colours come from the report's one mapping."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from mpdit_bench.evaluation import metric_table as T  # noqa: E402
from mpdit_bench.reports.colours import colour_map, marker_map  # noqa: E402
from mpdit_bench.reports.units import flop_unit  # noqa: E402
from mpdit_bench.reports.verdicts import metric_value  # noqa: E402
from mpdit_bench.sweeps.records import training_log  # noqa: E402

SMOKE_PANEL = "smoke runs (not compared)"


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


def _styles(labels: list[str], colours: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """One colour and marker per configuration, shared by every panel and every plot of a report (from
    ``colours``, the report's mapping; else by order here); a legend instead of labels on the points,
    which overlap when runs have near-equal cost (k = 4, 6, 8 differ by ~10 % in GFLOPs)."""
    colours = {**colour_map(labels), **(colours or {})}
    markers = marker_map(colours)
    return {label: {"color": colours[label], "marker": markers[label]} for label in dict.fromkeys(labels)}


def _figure_legend(fig) -> None:
    """One legend for all panels, right of them: a configuration has one colour in every panel."""
    seen: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))


def _panels(groups: list[str], height: float = 4.2, width: float = 5.5):
    """One panel per group, side by side."""
    fig, axes = plt.subplots(1, len(groups), figsize=(width * len(groups), height), squeeze=False)
    return fig, dict(zip(groups, axes[0]))


def _save(fig, out: Path) -> None:
    fig.tight_layout()
    fig.savefig(out, dpi=120, bbox_inches="tight")  # keeps the legend right of the panels
    plt.close(fig)


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


def pareto_plot(points: list[dict[str, Any]], metric: str, out: Path, title: str,
                colours: dict[str, str] | None = None) -> int:
    """Mean over seeds vs true GFLOPs of the trained model, 95 % error bars, the front of the means, and
    hollow markers for points not distinguishable from it; one panel per size group (``group``), smoke
    runs in a panel of their own. Returns how many configurations had no value."""
    have = [p for p in points if p["summary"].mean is not None and p["gflops"] is not None]
    style = _styles([p["label"] for p in have], colours)
    scale, unit = flop_unit([p["gflops"] * 1e9 for p in have])  # MFLOP for CPU-scale models, GFLOP for the paper's
    per = 1e9 / scale  # GFLOPs -> the axis unit
    panels = list(dict.fromkeys(SMOKE_PANEL if p["smoke"] else p.get("group") or "" for p in have)) or [""]
    fig, axes = _panels(sorted(panels, key=lambda g: g == SMOKE_PANEL))
    for group, ax in axes.items():
        mine = [p for p in have if (SMOKE_PANEL if p["smoke"] else p.get("group") or "") == group]
        hollow = indistinguishable(mine, metric) if group != SMOKE_PANEL else set()
        for p in mine:
            s, st = p["summary"], style[p["label"]]
            yerr = None if s.low is None else [[s.mean - s.low], [s.high - s.mean]]
            name = p["label"] + (" (not distinguishable from the front)" if p["label"] in hollow else "")
            ax.errorbar(p["gflops"] * per, s.mean, yerr=yerr, fmt=st["marker"], color=st["color"], capsize=3, ms=6,
                        mfc="none" if p["label"] in hollow else st["color"], label=f"{name} (n={s.n})")
        front = pareto_front([(p["gflops"], p["summary"].mean) for p in mine], metric)
        if len(front) > 1 and group != SMOKE_PANEL:
            ax.plot([g * per for g, _ in front], [m for _, m in front], "k--", lw=1,
                    label=f"Pareto front of the means ({_direction(metric)})")
        ax.set_title(group or "all configurations", fontsize=9)
        ax.set_xlabel(f"{unit} per image, true count (fvcore convention)")
        ax.set_ylabel(f"{T.metric(metric).label} ({_direction(metric)})")
    missing = len(points) - len(have)
    _figure_legend(fig)
    fig.suptitle(title + (f"\n({missing} configuration(s) without {metric} not plotted)" if missing else ""),
                 fontsize=9)
    _save(fig, out)
    return missing


def _compute_axis(ax, values: list[float]) -> float:
    """Label ``ax``'s x axis in the FLOP unit that suits ``values``; returns the divisor."""
    scale, unit = flop_unit(values)
    ax.set_xlabel(f"training compute ({unit}, counted)")
    ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    return scale


def training_flops(rec: dict[str, Any], images: float) -> float | None:
    """Training FLOPs after ``images`` images: 3 x (forward GFLOPs per image) x images (forward + backward)."""
    g = rec.get("gflops")
    return None if g is None else 3 * g * 1e9 * images


def _loss_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The training-loss log kept with a record (rows of step and loss), if any."""
    return [r for r in training_log(rec) if r.get("step") is not None and r.get("loss") is not None]


def compute_plot(records: list[dict[str, Any]], metric: str, out: Path, title: str,
                 colours: dict[str, str] | None = None, panel_of: dict[str, str] | None = None) -> None:
    """Each run's final metric against its training compute (3 x GFLOPs x images), with the 95 % interval
    of its evaluation, one panel per group (``panel_of``: label -> group); under it, where the records keep
    a training-loss log, the training loss against the same compute."""
    order = list(colours or {})
    records = sorted(records, key=lambda r: order.index(r["label"]) if r["label"] in order else len(order))
    panel_of = panel_of or {}
    groups = list(dict.fromkeys(panel_of.get(r["label"], "") for r in records)) or [""]
    with_loss = any(_loss_rows(r) for r in records)
    fig, axes = plt.subplots(2 if with_loss else 1, len(groups), figsize=(5.5 * len(groups) + 2.5,
                             7.5 if with_loss else 4.2), squeeze=False)
    style = _styles([rec["label"] for rec in records], colours)
    for col, group in enumerate(groups):
        mine = [r for r in records if panel_of.get(r["label"], "") == group]
        finals = [(r, training_flops(r, r["images_seen"]), metric_value(r, metric)) for r in mine
                  if r.get("images_seen") and r.get("gflops") is not None and metric_value(r, metric) is not None]
        ax = axes[0][col]
        scale = _compute_axis(ax, [x for _, x, _ in finals])
        for rec, x, y in finals:
            ci = (rec.get("intervals") or {}).get(metric)
            st = style[rec["label"]]
            name = rec["label"] if rec["label"] not in ax.get_legend_handles_labels()[1] else None
            ax.errorbar(x / scale, y, yerr=None if not ci else [[y - ci[0]], [ci[1] - y]],
                        fmt=st["marker"], color=st["color"], capsize=3, ms=5, label=name)
        ax.set_ylabel(f"final {T.metric(metric).label}")
        ax.set_title(group or "all configurations", fontsize=9)
        if with_loss:
            _loss_panel(axes[1][col], mine, style)
    _figure_legend(fig)
    fig.suptitle(title, fontsize=9)
    _save(fig, out)


def _loss_panel(ax, records: list[dict[str, Any]], style: dict[str, dict[str, Any]]) -> None:
    lines = []
    for rec in records:
        batch = (rec.get("spec") or {}).get("train", {}).get("global_batch")
        rows = _loss_rows(rec)
        if rec.get("gflops") is not None and batch and rows:
            lines.append((rec, [training_flops(rec, r["step"] * batch) for r in rows], [r["loss"] for r in rows]))
    scale = _compute_axis(ax, [x for _, xs, _ in lines for x in xs])
    for rec, xs, ys in lines:
        name = rec["label"] if rec["label"] not in ax.get_legend_handles_labels()[1] else None
        ax.plot([x / scale for x in xs], ys, lw=1, color=style[rec["label"]]["color"], label=name)
    ax.set_ylabel("training loss")

def curves_plot(panels: dict[str, list[tuple[str, Any]]], targets: dict[str, float], metric: str, out: Path,
                title: str, colours: dict[str, str]) -> None:
    """Metric against training FLOPs: per panel (size group), one line per configuration (the mean over
    seeds) with its 95 % band, and the panel's target (its reference's final mean) as a dashed line."""
    fig, axes = _panels(list(panels))
    for group, ax in axes.items():
        lines = [(label, b) for label, b in panels[group] if b is not None]
        scale = _compute_axis(ax, [float(b.flops[-1]) for _, b in lines])
        for label, b in lines:
            colour = colours.get(label, "k")
            ax.plot(b.flops / scale, b.mean, color=colour, lw=1.5, marker="." if len(b.flops) == 1 else None,
                    label=f"{label} (n={b.seeds})")
            if b.low is not None:
                ax.fill_between(b.flops / scale, b.low, b.high, color=colour, alpha=0.2, lw=0)
        if group in targets:
            ax.axhline(targets[group], color="k", ls="--", lw=1, label=f"target {targets[group]:.3g} "
                       "(reference's final mean)")
        ax.set_title(group or "all configurations", fontsize=9)
        ax.set_ylabel(f"{T.metric(metric).label} ({_direction(metric)})")
    _figure_legend(fig)
    fig.suptitle(title, fontsize=9)
    _save(fig, out)
