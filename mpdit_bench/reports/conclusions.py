"""The report's opening paragraph: one plain sentence per configuration against its reference, built from
the report's own verdicts and compute-to-target results, never from anything else."""

from __future__ import annotations

from typing import Optional

from mpdit_bench.reports import verdicts as V
from mpdit_bench.reports.comparisons import Comparison
from mpdit_bench.reports.compute_section import ratio_text, reach_text
from mpdit_bench.reports.curves import ToTarget
from mpdit_bench.reports.tables import fmt


def _interval(v: V.Verdict) -> str:
    return f"{v.diff:+.3g} [{v.low:+.3g}, {v.high:+.3g}]" if v.low is not None else f"{v.diff:+.3g}"


def verdict_clause(c: Comparison) -> str:
    """What the primary metric says, with the power of a null result."""
    v = c.verdict
    if v.verdict == V.NOT_COMPARED:
        return f"on {c.metric} it is not compared: one seed, so the spread between seeds is unknown"
    if v.equivalence is not None:
        return f"on {c.metric} it is {v.verdict} (difference {_interval(v)}, two one-sided tests)"
    if v.decided:
        return f"on {c.metric} it is {v.verdict} (difference {_interval(v)}, {v.test})"
    text = f"on {c.metric} there is {v.verdict} (difference {_interval(v)}, {v.test})"
    if v.detectable is not None:
        text += (f"; with {c.summary.n} seeds this design could only have detected a difference of "
                 f"{fmt(v.detectable, 3)} or more at 80 % power")
    if c.paper_diff is not None and v.seeds_for_effect is not None:
        text += f", and the paper's difference of {c.paper_diff:+.3g} would need {v.seeds_for_effect} seeds"
    return text


def target_clause(t: ToTarget) -> str:
    return (f"it reaches the reference's final {t.metric} ({fmt(t.target, 3)}) at {reach_text(t.flops)} of "
            f"training compute, {ratio_text(t)}")


def sentence(label: str, reference: str, primary: Optional[Comparison], target: Optional[ToTarget]) -> str:
    parts = [p for p in (target_clause(target) if target else None,
                         verdict_clause(primary) if primary else None) if p]
    if not parts:
        return ""
    return f"**{label}** against {reference}: " + "; ".join(parts) + "."


def conclusions(comparisons: list[Comparison], found: list[ToTarget], primary: str, smoke: list[str]) -> str:
    """The paragraph; empty when nothing was compared (no reference, or no values)."""
    firsts = [c for c in comparisons if c.metric == primary]
    by_label = {c.label: c for c in firsts}
    targets = {t.label: t for t in found}
    labels = list(dict.fromkeys([*by_label, *targets]))
    sentences = [sentence(label, (by_label.get(label) or targets[label]).reference, by_label.get(label),
                          targets.get(label)) for label in labels]
    sentences = [s for s in sentences if s]
    if not sentences:
        return ""
    if smoke:
        sentences.append(f"Smoke runs ({', '.join(smoke)}) only check that the pipeline runs and are not compared.")
    return "## Conclusions\n\n" + " ".join(sentences) + "\n"
