"""Every configuration against its reference, on every metric of a report, and the verdict tables.

The experiment's primary metric decides; the other metrics' verdicts are Holm-adjusted together over the
report's table (`verdicts.holm`). Smoke runs are never compared; a configuration with one seed gets no
verdict unless the experiment asks for an evaluation-noise-only comparison (``eval.single_seed``). A
metric with an equivalence margin (the experiment's ``equivalence``) is tested for equivalence (TOST).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from mpdit_bench.config import ModelConfig
from mpdit_bench.reports import verdicts as V
from mpdit_bench.reports.tables import MISSING, fmt, markdown_table, printed_figures, split_constant
from mpdit_bench.sweeps.runspec import RunSpec

NOISE_ONLY_SETTING = "evaluation-noise"
KEEP = ("configuration", "seeds", "mean", "difference", "difference 95 %", "verdict")  # columns shown even when alike


@dataclass
class Comparison:
    metric: str
    label: str
    reference: str
    summary: V.Summary
    verdict: V.Verdict
    paper_diff: Optional[float]   # the paper's value of this row minus its reference row's, same metric


def paper_value(spec: RunSpec, metric: str) -> Optional[float]:
    """The figure the paper prints for ``metric`` on the row this run rebuilds (None: not printed)."""
    if not spec.paper_row:
        return None
    return printed_figures(spec, ModelConfig.from_dict(spec.full_config), metric)["metric"]


def paper_difference(spec: RunSpec, ref_spec: RunSpec, metric: str) -> Optional[float]:
    mine, ref = paper_value(spec, metric), paper_value(ref_spec, metric)
    return None if mine is None or ref is None else float(mine) - float(ref)


def compare_all(exp, configs: dict[str, tuple[RunSpec, list[dict[str, Any]]]], metrics: list[str],
                primary: str) -> list[Comparison]:
    """Each non-smoke configuration with values against its reference (never itself), metric by metric,
    then Holm over the secondary metrics' verdicts."""
    out = []
    for metric in metrics:
        for label, (spec, recs) in configs.items():
            ref_label = exp.reference_label(spec) if exp else None
            if spec.smoke or ref_label is None or ref_label == label or ref_label not in configs:
                continue
            ref_spec, ref_recs = configs[ref_label]
            summary = V.summarise(label, recs, metric)
            if summary.n == 0 or not V.by_seed(ref_recs, metric):
                continue
            # the paper's figures are ImageNet figures: a stated effect only for runs at the paper's scale
            effect = paper_difference(spec, ref_spec, metric) if spec.scale == "paper" else None
            verdict = V.compare(label, recs, ref_recs, metric,
                                noise_only=spec.eval.get("single_seed") == NOISE_ONLY_SETTING,
                                effect=effect, margin=(exp.equivalence or {}).get(metric))
            out.append(Comparison(metric, label, ref_label, summary, verdict, effect))
    V.holm([c.verdict for c in out], primary)
    return out


def _interval(low, high) -> str:
    return MISSING if low is None else f"[{fmt(low, 3)}, {fmt(high, 3)}]"


def _signed(value: Optional[float]) -> str:
    return MISSING if value is None else f"{value:+.3g}"


def _seeds_for_paper(c: Comparison) -> str:
    if c.paper_diff is None:
        return MISSING
    if c.verdict.seeds_for_effect is None:
        return f"{_signed(c.paper_diff)}: {MISSING}"
    return f"{_signed(c.paper_diff)}: {c.verdict.seeds_for_effect}"


def _row(c: Comparison, primary: bool) -> dict[str, str]:
    v = c.verdict
    p = v.p if primary else (v.p_holm if v.p_holm is not None else v.p)
    return {"configuration": c.label, "seeds": str(c.summary.n), "mean": fmt(c.summary.mean, 3),
            "95 % interval": _interval(c.summary.low, c.summary.high), "difference": _signed(v.diff),
            "difference 95 %": _interval(v.low, v.high), "test": v.test,
            ("p" if primary else "p (Holm)"): fmt(p, 3),
            "detectable at 80 % power": fmt(v.detectable, 3),
            "paper's difference: seeds needed": _seeds_for_paper(c), "verdict": v.verdict}


def verdict_section(comparisons: list[Comparison], configs: dict[str, tuple[RunSpec, list[dict]]],
                    metrics: list[str], primary: str, smoke: list[str], exp) -> str:
    """Markdown: the method, then one table per metric (and reference), the reference written once."""
    secondary = sum(1 for c in comparisons if c.metric != primary and c.verdict.p is not None
                    and c.verdict.equivalence is None)
    noise_only = any(spec.eval.get("single_seed") == NOISE_ONLY_SETTING for spec, _ in configs.values())
    lines = ["\n## Verdicts against the reference\n",
             f"The primary metric (`{primary}`) decides. The other metrics' p-values are Holm-adjusted together "
             f"over this report's {secondary} secondary comparison(s) (`reports/verdicts.py`); a secondary "
             "\"better\" / \"worse\" whose adjusted p is not below 0.05 reads \"no detectable difference (after "
             "Holm)\". Per configuration: the mean over its training seeds with a 95 % interval (t over seeds). "
             "Against the reference: the difference of the means with a 95 % interval, paired by seed (t on the "
             "per-seed differences) where at least two seeds match, else a two-level bootstrap over seeds and "
             "evaluation samples. \"detectable at 80 % power\" is the smallest difference this design could have "
             "detected at the 5 % level; \"seeds needed\" is the number of seeds to detect the paper's difference "
             "for that row (this row's paper value minus the reference row's) with 80 % power, given at scale paper "
             "only (the paper's figures are on ImageNet)."]
    lines[-1] += (" A configuration with one seed gets no verdict (" + (
        "here compared on its evaluation noise only, as the experiment asks with `eval.single_seed: "
        "evaluation-noise`: such a verdict ignores seed-to-seed variation)" if noise_only else
        "the spread between training seeds is unknown") + ").")
    if exp and exp.equivalence:
        lines[-1] += (" Equivalence (two one-sided tests at 5 %) within the experiment's margins: "
                     + ", ".join(f"`{m}` ±{d:g}" for m, d in exp.equivalence.items()) + ".")
    if smoke:
        lines[-1] += f" Smoke runs are never compared: {', '.join(smoke)}."
    for metric in metrics:
        mine = [c for c in comparisons if c.metric == metric]
        if not mine:
            continue
        lines.append(f"\n### {metric}" + (" (primary: decides)" if metric == primary else " (Holm-adjusted)") + "\n")
        for ref in dict.fromkeys(c.reference for c in mine):
            s = V.summarise(ref, configs[ref][1], metric)
            lines.append(f"Reference **{ref}**: mean {fmt(s.mean, 3)} {_interval(s.low, s.high)}, {s.n} seed(s).\n")
            rows, same = split_constant([_row(c, metric == primary) for c in mine if c.reference == ref], KEEP)
            lines.append(markdown_table(rows))
            if same:
                lines.append("The same on every row: " + "; ".join(f"{k} = {v}" for k, v in same.items()) + ".\n")
    return "\n".join(lines) + "\n"
