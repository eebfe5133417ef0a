"""The report's "compute to target" section: training compute at which each configuration reaches its
reference's final quality, its 95 % interval over seeds, the ratio in the paper's form, and quality at
equal compute."""

from __future__ import annotations

from typing import Any, Optional

from mpdit_bench.reports.compute_to_target import ComputeToTarget
from mpdit_bench.reports.curves import ToTarget, to_target
from mpdit_bench.reports.tables import MISSING, fmt, markdown_table
from mpdit_bench.reports.units import format_flops
from mpdit_bench.sweeps.runspec import RunSpec


def targets(exp, configs: dict[str, tuple[RunSpec, list[dict[str, Any]]]], metric: str) -> list[ToTarget]:
    """Every non-smoke configuration with a curve against its reference (never itself), in order."""
    out = []
    for label, (spec, recs) in configs.items():
        ref = exp.reference_label(spec) if exp else None
        if spec.smoke or ref is None or ref == label or ref not in configs:
            continue
        found = to_target(label, recs, ref, configs[ref][1], metric)
        if found:
            out.append(found)
    return out


def _seconds(value: float) -> str:
    return f"{value:.3g} s" if value < 120 else f"{value / 60:.3g} min"


def reach_text(c: ComputeToTarget, unit=format_flops) -> str:
    """"2.1 TFLOP [1.8, 2.5 TFLOP]", or "> 3.0 TFLOP" when a seed never reached the target."""
    if c.censored:
        return f"> {unit(c.censored_above)}"
    if c.low is None:
        return unit(c.estimate)
    return f"{unit(c.estimate)} [{unit(c.low)}, {unit(c.high)}]"


def ratio_text(t: ToTarget) -> str:
    """MPDiT's form: "8.8 % of the reference's compute (11.36x less)"; a censored reach reads "> ..."."""
    c = t.flops
    if c.censored:
        return f"> {100 * c.censored_above / t.reference_flops:.3g} % of the reference's compute"
    ratio = t.ratio
    text = f"{100 * ratio:.3g} % of the reference's compute ({1 / ratio:.3g}x " + ("less)" if ratio < 1 else "more)")
    if c.low is not None:
        text += f", 95 % [{100 * c.low / t.reference_flops:.3g} %, {100 * c.high / t.reference_flops:.3g} %]"
    return text


def _pair(values: tuple[Optional[float], Optional[float]]) -> str:
    mine, ref = values
    return f"{fmt(mine, 3)} vs {fmt(ref, 3)}" if mine is not None or ref is not None else MISSING


def _row(t: ToTarget) -> dict[str, str]:
    row = {"configuration": t.label, "seeds": str(len(t.flops.reaches)), "compute to target": reach_text(t.flops),
           "ratio": ratio_text(t)}
    if t.wall is not None:
        row["wall time to target"] = reach_text(t.wall, _seconds)
        row["reference wall time"] = _seconds(t.reference_wall)
    row["equal compute: at the reference's end"] = f"{format_flops(t.reference_end)}: {_pair(t.at_reference_end)}"
    row["at its own end"] = f"{format_flops(t.own_end)}: {_pair(t.at_own_end)}"
    return row


def compute_section(found: list[ToTarget], metric: str) -> str:
    if not found:
        return ""
    method = next((t.flops.method for t in found if t.flops.low is not None), found[0].flops.method)
    lines = ["\n## Compute to target\n",
             f"Training compute (counted FLOPs) at which each configuration's `{metric}` curve first reaches its "
             "reference's final value (the mean over the reference's seeds), by linear interpolation between "
             f"evaluation points; 95 % interval: {method.replace('; censored', '')}, back-transformed (an interval "
             "of the geometric mean). \"> X\": at least one seed never reached the target within its training "
             "(censored at its last evaluation, never extrapolated). The ratio is to the reference's whole "
             "training compute. Quality at equal compute: the configuration's and the reference's mean curves "
             "read at the same training FLOPs, shown as configuration vs reference (— beyond a curve's end: never "
             "extrapolated). Wall time is given only when every run "
             "compared ran on the same hardware.\n"]
    for ref in dict.fromkeys(t.reference for t in found):
        mine = [t for t in found if t.reference == ref]
        lines.append(f"Reference **{ref}**: target {metric} = {fmt(mine[0].target, 4)}, reached at the end of its "
                     f"training, {format_flops(mine[0].reference_flops)}.\n")
        lines.append(markdown_table([_row(t) for t in mine]))
    return "\n".join(lines) + "\n"
