"""`mpdit-bench report`: one markdown file per experiment and scale, with PNG plots, and an index.

Each table lists the experiment's runs (from its YAML, so runs not done yet show as "not run") beside
the paper's published figures, our count of the same full-size architecture (true and paper convention),
the model actually trained at that scale and its metrics. Records come from ``RESULTS/**/record.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mpdit_bench import paper as published
from mpdit_bench.evaluation.metric_table import HELDOUT_LOSS
from mpdit_bench.reports import verdicts as V
from mpdit_bench.reports.paper_render import table_markdown
from mpdit_bench.reports.paper_tables import build_table
from mpdit_bench.reports.plots import compute_plot, pareto_plot
from mpdit_bench.reports.tables import MISSING, NOT_IN_FACTS, fmt, markdown_table, table_row
from mpdit_bench.sweeps.experiment import load_experiment
from mpdit_bench.sweeps.runspec import RunSpec, primary_metric
from mpdit_bench.sweeps.lookup import experiment_names


def _records(results_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(Path(results_dir).rglob("record.json"))]


def _experiment_file(name: str, experiments_dir: Path) -> Path | None:
    path = experiments_dir / f"{name}.yaml"
    return path if path.is_file() else None


def write_reports(results_dir: str | Path, out_dir: str | Path, experiment: str | None = None,
                  experiments_dir: str | Path = "experiments") -> list[Path]:
    """Write every report (or only ``experiment``'s); returns the files written."""
    out_dir, experiments_dir = Path(out_dir), Path(experiments_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = _records(Path(results_dir))
    names = {r["experiment"] for r in records}
    names |= set(experiment_names(experiments_dir)) if not experiment else set()
    if experiment:
        names = {experiment} if experiment in names or _experiment_file(experiment, experiments_dir) else set()
    written: list[Path] = []
    index = ["# mpdit-bench reports\n", f"Tables rebuilt beside the paper. `{MISSING}` = not computed; "
             f"`{NOT_IN_FACTS}` = the paper prints no such figure for that run (`mpdit_bench/paper/`).\n"]
    for name in sorted(names):
        path = _experiment_file(name, experiments_dir)
        exp = load_experiment(path) if path else None
        mine = [r for r in records if r["experiment"] == name]
        defined = list(exp.scales) if exp else []  # no records yet: the architecture side only
        scales = sorted({r["scale"] for r in mine}) or (["paper"] if "paper" in defined else defined[:1])
        for scale in scales:
            md = _one_report(name, scale, exp, [r for r in mine if r["scale"] == scale], out_dir)
            written += md
            index.append(f"- [{name} ({scale})]({md[0].name})"
                         + (f", {published.table(exp.paper_table).name}" if exp and exp.paper_table else ""))
    if written and not experiment:  # the index lists every report
        (out_dir / "index.md").write_text("\n".join(index) + "\n")
        written.append(out_dir / "index.md")
    return written


def _configurations(specs: list[RunSpec], records: list[dict[str, Any]]) -> dict[str, tuple[RunSpec, list[dict]]]:
    """label -> (its first run, the finished records of all its seeds), in the experiment's order."""
    by_id = {r["run_id"]: r for r in records}
    configs: dict[str, tuple[RunSpec, list[dict]]] = {}
    for spec in specs:
        recs = configs.setdefault(spec.label, (spec, []))[1]
        if spec.run_id in by_id:
            recs.append(by_id[spec.run_id])
    return configs


def _interval(low, high) -> str:
    return MISSING if low is None else f"[{fmt(low, 3)}, {fmt(high, 3)}]"


def _verdict_section(exp, configs: dict[str, tuple[RunSpec, list[dict]]], metrics: list[str]) -> str:
    """Mean over seeds with a 95 % interval per configuration, and the verdict against its reference."""
    lines = ["\n## Against the reference: mean over seeds, 95 % intervals, verdicts\n",
             "Per configuration: the mean over its training seeds with a 95 % interval (Student's t over the "
             "seeds; with one seed, the bootstrap interval of its single evaluation). Against the reference "
             "(the experiment's `reference`): the difference of the means with a 95 % interval, paired by "
             "seed (t on the per-seed differences) where at least two seeds match, else a bootstrap of the "
             "difference (`mpdit_bench/reports/verdicts.py`); \"better\" / \"worse\" when the interval "
             "excludes 0, else \"no detectable difference\". No correction for multiple comparisons. "
             "Smoke configurations (one seed where others have several) are marked.\n\n"]
    rows = []
    for metric in metrics:
        for label, (spec, recs) in configs.items():
            summary = V.summarise(label, recs, metric)
            if summary.n == 0:
                continue
            ref_label = exp.reference_label(spec)
            ref = configs.get(ref_label, (None, []))[1] if ref_label else []
            if ref_label is None or label == ref_label:
                verdict = V.Verdict(label, metric, None, None, None, "reference" if label == ref_label else "—", "—")
            else:
                verdict = V.compare(label, recs, ref, metric)
            rows.append({"metric": metric, "configuration": label + (" (smoke)" if spec.smoke else ""),
                         "seeds": str(summary.n), "mean": fmt(summary.mean, 3),
                         "95 % interval": _interval(summary.low, summary.high),
                         "vs reference": ref_label or MISSING, "difference": fmt(verdict.diff, 3),
                         "difference 95 %": _interval(verdict.low, verdict.high), "test": verdict.test,
                         "verdict": verdict.verdict})
    return "\n".join(lines) + markdown_table(rows)


def _one_report(name: str, scale: str, exp, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    by_id = {r["run_id"]: r for r in records}
    specs = exp.runs(scale) if exp and scale in exp.scales else []
    known = {s.run_id for s in specs}
    specs += [RunSpec.from_dict(r["spec"]) for r in records if r["run_id"] not in known]  # e.g. search trials
    metrics = specs[0].eval["metrics"] if specs else []
    primary = primary_metric(specs[0]) if specs else None
    rows = [table_row(s, by_id.get(s.run_id), metrics, primary) for s in specs]
    stem = f"{name}_{scale}"
    md = [f"# {name} at scale {scale}\n"]
    table = published.table(exp.paper_table) if exp and exp.paper_table else None
    if exp:
        md.append(f"{exp.description}. Rebuilds {table.name if table else '(no paper table)'}; "
                  f"experiment file `{exp.path}`.\n")
    if table:  # the paper's table first, in its own layout, filled from this experiment's runs
        md.append(table_markdown(build_table(table, records, scale), heading="##"))
        md.append("## Runs\n")
    md.append(f"{len(records)} of {len(specs)} runs finished. Paper columns hold the figures the paper prints "
              f"for the row a run names (`paper row`), else for an unmodified preset; `{NOT_IN_FACTS}` "
              f"marks a figure the paper does not print for that run, `{MISSING}` a value we did not compute. "
              "\"ours\" params/GFLOPs count the full-size architecture at the experiment's resolution "
              "(analytic count on the meta device; true = attention counted over the real tokens, paper "
              "convention = attention charged as 256 fine tokens in every block)."
              + (" At scale cpu the trained model is the scaled-down one (docs/SWEEPS.md) and its own counts "
                 "are in the \"trained\" columns; its metrics are Fashion-MNIST proxies and a small-sample FID, "
                 "not comparable with ImageNet FID." if scale == "cpu" else "") + "\n")
    md.append(markdown_table(rows))
    configs = _configurations(specs, records)
    points = [{"label": label, "smoke": spec.smoke, "gflops": next((r["gflops"] for r in recs if r.get("gflops")), None),
               "summary": V.summarise(label, recs, primary)} for label, (spec, recs) in configs.items() if recs]
    if records and exp:
        md.append(_verdict_section(exp, configs, [primary, HELDOUT_LOSS, *[m for m in metrics if m != primary]]))
    files = []
    if records and primary:
        pareto = out_dir / f"{stem}_pareto.png"
        missing = pareto_plot(points, primary, pareto,
                              f"{name} ({scale}): {primary} vs GFLOPs, mean over seeds with 95 % interval")
        compute = out_dir / f"{stem}_compute.png"
        compute_plot(records, primary, compute, f"{name} ({scale}): loss and {primary} vs training compute")
        md.append(f"\n## {primary} against GFLOPs\n\n![pareto]({pareto.name})\n")
        if missing:
            md.append(f"\n{missing} configuration(s) have no {primary} value and are not plotted.\n")
        md.append("\nError bars: the 95 % intervals of the table above. Hollow markers: off the Pareto front "
                  "(of the means) but not distinguishable from it: the interval overlaps that of a front point "
                  "with no more GFLOPs.\n")
        md.append(f"\n## Against training compute\n\n![compute]({compute.name})\n")
        files += [pareto, compute]
        grids = [(r["label"], r.get("seed"), r.get("sample_grid")) for r in records]
        md.append("\n## Sample grids\n")
        for label, seed, grid in grids:
            link = os.path.relpath(grid, out_dir) if grid else None
            md.append(f"- {label}, seed {seed}: " + (f"[samples]({link})" if link else MISSING))
    path = out_dir / f"{stem}.md"
    path.write_text("\n".join(md) + "\n")
    return [path, *files]
