"""`mpdit-bench report`: one markdown file per experiment and scale, with PNG plots, and an index.

A report opens with its conclusions (one sentence per configuration against its reference, from the
verdicts below), then quality along training and compute to target where the records have curves, the
paper's table, the runs (architecture and cost apart from metrics), the verdicts by metric, the plots and
the sample grids. Each table lists the experiment's runs (from its YAML, so runs not done yet show as "not run") beside
the paper's published figures, our count of the same full-size architecture (true and paper convention),
the model actually trained at that scale and its metrics. Records come from ``RESULTS/**/record.json``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from mpdit_bench import paper as published
from mpdit_bench.evaluation.metric_table import HELDOUT_LOSS
from mpdit_bench.config import ConfigError
from mpdit_bench.reports import verdicts as V
from mpdit_bench.reports.colours import colour_map
from mpdit_bench.reports.comparisons import compare_all, verdict_section
from mpdit_bench.reports.compute_section import compute_section
from mpdit_bench.reports.compute_section import targets as targets_of
from mpdit_bench.reports.conclusions import conclusions
from mpdit_bench.reports.curves import ToTarget, band, curve_metric, curves
from mpdit_bench.reports.paper_render import table_markdown
from mpdit_bench.reports.paper_tables import build_table
from mpdit_bench.reports.plots import SMOKE_PANEL, compute_plot, curves_plot, pareto_plot
from mpdit_bench.reports.tables import MISSING, NOT_IN_FACTS, cost_row, fmt, markdown_table, metrics_row, split_constant
from mpdit_bench.sweeps.experiment import load_experiment
from mpdit_bench.sweeps.runspec import RunSpec, primary_metric
from mpdit_bench.sweeps.lookup import experiment_names


def _records(results_dir: Path) -> list[dict[str, Any]]:
    """Every record under ``results_dir``, each with the folder it was read from (``_dir``): links are
    resolved from there, since a record's ``run_dir`` is relative to wherever its sweep ran."""
    records = []
    for path in sorted(Path(results_dir).rglob("record.json")):
        rec = json.loads(path.read_text())
        rec["_dir"] = str(path.parent)
        records.append(rec)
    return records


def refuse_empty(results_dir: Path, records: list[dict[str, Any]]) -> None:
    if not records:
        where = "does not exist" if not results_dir.exists() else "holds no record.json"
        raise ConfigError("--results", str(results_dir), f"a folder holding finished runs' record.json "
                          f"(RESULTS/<experiment>/<scale>/<run_id>/record.json); this one {where}")


def _experiment_file(name: str, experiments_dir: Path) -> Path | None:
    path = experiments_dir / f"{name}.yaml"
    return path if path.is_file() else None


def write_reports(results_dir: str | Path, out_dir: str | Path, experiment: str | None = None,
                  experiments_dir: str | Path = "experiments") -> list[Path]:
    """Write every report (or only ``experiment``'s); returns the files written."""
    out_dir, experiments_dir = Path(out_dir), Path(experiments_dir)
    records = _records(Path(results_dir))
    refuse_empty(Path(results_dir), records)
    out_dir.mkdir(parents=True, exist_ok=True)
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


def size_group(spec: RunSpec) -> str:
    """The panel a configuration is plotted in: its group, else its model's size (B, XL, ...)."""
    if spec.group:
        return spec.group
    size = re.search(r"-(S|B|L|XL|H)(?=\b|/)", spec.model)
    return size.group(1) if size else ""


def grid_path(record: dict[str, Any]) -> Path | None:
    """The record's sample grid, found from the folder the record was read from."""
    grid = record.get("sample_grid")
    if not grid:
        return None
    run_dir, grid = Path(record.get("run_dir") or ""), Path(grid)
    try:
        inside = grid.relative_to(run_dir)
    except ValueError:
        inside = Path(grid.name)
    return Path(record["_dir"]) / inside if record.get("_dir") else grid


def _sample_links(configs: dict[str, tuple[RunSpec, list[dict]]], out_dir: Path) -> list[str]:
    """One line per configuration (the experiment's order), its seeds' grids in seed order."""
    lines = ["\n## Sample grids\n"]
    for label, (spec, recs) in configs.items():
        if not recs:
            continue
        links = []
        for rec in sorted(recs, key=lambda r: r.get("seed") or 0):
            grid = grid_path(rec)
            ok = grid is not None and grid.is_file()
            links.append(f"[seed {rec.get('seed')}]({os.path.relpath(grid, out_dir)})" if ok
                         else f"seed {rec.get('seed')}: {MISSING}")
        lines.append(f"- {label}" + (" (smoke)" if spec.smoke else "") + ": " + ", ".join(links))
    return lines


def configuration_cost(spec: RunSpec, seeds: list[RunSpec], by_id: dict[str, dict], primary: str) -> dict[str, str]:
    """One row per configuration: its architecture, cost and seeds (the seeds differ only in the seed)."""
    done = [by_id[s.run_id] for s in seeds if s.run_id in by_id]
    row = cost_row(spec, done[0] if done else None, primary)
    row["seed"] = ", ".join(str(s.seed) for s in seeds) + (" (smoke)" if spec.smoke else "")
    minutes = [r["timings"]["train"] / 60 for r in done if (r.get("timings") or {}).get("train") is not None]
    row["train min"] = fmt(sum(minutes) / len(minutes), 1) + (" (mean)" if len(minutes) > 1 else "") if minutes else MISSING
    row["status"] = f"{len(done)} of {len(seeds)} finished" if len(seeds) > 1 else row["status"]
    return row


def _compact(rows: list[dict[str, str]]) -> str:
    """A table without its constant columns, which are stated once under it."""
    rows, same = split_constant(rows)
    note = ("\nThe same on every row: " + "; ".join(f"{k} = {v}" for k, v in same.items()) + ".\n") if same else ""
    return markdown_table(rows) + note


def _curves_part(name: str, scale: str, exp, configs, primary: str, stem: str, out_dir: Path,
                 colours: dict[str, str]) -> tuple[str, list[ToTarget], list[Path]]:
    """The curves plot and the compute-to-target section (empty without curves)."""
    records = [r for _, recs in configs.values() for r in recs]
    metric = curve_metric(records, primary)
    if metric is None:
        return "", [], []
    panels: dict[str, list] = {}
    targets: dict[str, float] = {}
    for label, (spec, recs) in configs.items():
        group = SMOKE_PANEL if spec.smoke else size_group(spec)
        panels.setdefault(group, []).append((label, band(curves(recs, metric))))
        ref = exp.reference_label(spec) if exp else None
        if ref == label and not spec.smoke:
            ends = [c.values[-1] for c in curves(recs, metric)]
            if ends:
                targets[group] = sum(ends) / len(ends)
    # a panel without a single curve (e.g. smoke runs evaluated only at their end) is left out
    panels = {g: p for g, p in sorted(panels.items(), key=lambda kv: kv[0] == SMOKE_PANEL)
              if any(b is not None for _, b in p)}
    path = out_dir / f"{stem}_curves.png"
    curves_plot(panels, targets, metric, path, f"{name} ({scale}): {metric} along training, mean over seeds "
                "with 95 % band", colours)
    found = targets_of(exp, configs, metric)
    md = (f"\n## {metric} along training\n\n![curves]({path.name})\n\nOne line per configuration: the mean "
          "over its seeds, each seed's evaluations interpolated linearly onto the training compute all its seeds "
          "cover; band: 95 % t interval over seeds. Dashed: the target, the reference's final mean. "
          + ("Smoke runs are drawn in their own panel and not compared. " if SMOKE_PANEL in panels else "")
          + "\n" + compute_section(found, metric))
    return md, found, [path]


def _one_report(name: str, scale: str, exp, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    by_id = {r["run_id"]: r for r in records}
    specs = exp.runs(scale) if exp and scale in exp.scales else []
    known = {s.run_id for s in specs}
    specs += [RunSpec.from_dict(r["spec"]) for r in records if r["run_id"] not in known]  # e.g. search trials
    metrics = specs[0].eval["metrics"] if specs else []
    primary = primary_metric(specs[0]) if specs else None
    stem = f"{name}_{scale}"
    configs = _configurations(specs, records)
    colours = colour_map(configs)
    smoke = [label for label, (spec, recs) in configs.items() if spec.smoke and recs]
    md = [f"# {name} at scale {scale}\n"]
    table = published.table(exp.paper_table) if exp and exp.paper_table else None
    if exp:
        md.append(f"{exp.description}. Rebuilds {table.name if table else '(no paper table)'}; "
                  f"experiment file `{exp.path}`.\n")
    files: list[Path] = []
    verdict_metrics = list(dict.fromkeys([primary, HELDOUT_LOSS, *metrics])) if primary else []
    comparisons = compare_all(exp, configs, verdict_metrics, primary) if records and exp and primary else []
    curves_md, found, curve_files = (_curves_part(name, scale, exp, configs, primary, stem, out_dir, colours)
                                     if records and primary else ("", [], []))
    files += curve_files
    opening = conclusions(comparisons, found, primary, smoke) if primary else ""
    if opening:
        md.append(opening)
    if curves_md:
        md.append(curves_md)
    if table:  # the paper's table, in its own layout, filled from this experiment's runs
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
    md.append("### Architecture and cost\n")
    md.append(_compact([configuration_cost(spec, [s for s in specs if s.label == label], by_id, primary)
                        for label, (spec, _) in configs.items()]))
    md.append("\n### Metrics\n")
    md.append(_compact([metrics_row(s, by_id.get(s.run_id), metrics, primary) for s in specs]))
    if comparisons:
        md.append(verdict_section(comparisons, configs, verdict_metrics, primary, smoke, exp))
    points = [{"label": label, "smoke": spec.smoke, "group": size_group(spec),
               "gflops": next((r["gflops"] for r in recs if r.get("gflops")), None),
               "summary": V.summarise(label, recs, primary)} for label, (spec, recs) in configs.items() if recs]
    if records and primary:
        pareto = out_dir / f"{stem}_pareto.png"
        missing = pareto_plot(points, primary, pareto,
                              f"{name} ({scale}): {primary} vs GFLOPs, mean over seeds with 95 % interval", colours)
        compute = out_dir / f"{stem}_compute.png"
        compute_plot(records, primary, compute, f"{name} ({scale}): {primary} and training loss vs training compute",
                     colours, {label: SMOKE_PANEL if spec.smoke else size_group(spec)
                               for label, (spec, _) in configs.items()})
        md.append(f"\n## {primary} against GFLOPs\n\n![pareto]({pareto.name})\n")
        if missing:
            md.append(f"\n{missing} configuration(s) have no {primary} value and are not plotted.\n")
        md.append("\nError bars: 95 % intervals over seeds. One panel per size group; smoke runs in a panel of "
                  "their own. Hollow markers: off the Pareto front of the means but not distinguishable from it "
                  "(the interval overlaps that of a front point with no more GFLOPs).\n")
        md.append(f"\n## Against training compute\n\n![compute]({compute.name})\n")
        files += [pareto, compute]
        md += _sample_links(configs, out_dir)
    path = out_dir / f"{stem}.md"
    path.write_text("\n".join(md) + "\n")
    return [path, *files]
