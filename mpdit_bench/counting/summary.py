"""Counting a named model with overrides, as plain dicts for the CLI, sweeps and reports."""

from __future__ import annotations

from typing import Any

import torch

from mpdit_bench import paper as published
from mpdit_bench.counting.measure import build_for_counting, count, count_schedule
from mpdit_bench.models import build_model, get_preset, list_models, model_config, paper_figures
from mpdit_bench.models.presets import PaperFigures


def _row_figures(cfg) -> PaperFigures | None:
    """Figures of a published row with exactly this architecture (e.g. a Table 7 design set by overrides)."""
    for row in published.rows_for(cfg):
        table = published.table(f"{row.paper}/{row.table}")
        kinds = {c.kind: row.values.get(c.key) for c in table.columns}
        if kinds.get("params") is not None or kinds.get("gflops") is not None:
            return PaperFigures(kinds.get("params"), kinds.get("gflops"), f"{table.name}, row {row.label}",
                                gflops_convention=row.gflops_convention)
    return None


def count_model(name: str, resolution: int = 256, overrides: dict[str, Any] | None = None,
                cross_check: bool = True) -> dict[str, Any]:
    """Every count for a preset with overrides; ``paper_*`` are set only for an unmodified published preset.

    A model with a patch schedule over time (PPFlow) reports the same keys for its finest stage (one forward
    pass at low noise), plus ``stages``, ``gflops_expected`` (per network evaluation, averaged over a
    trajectory), ``relative_flops_pct`` (vs. the same model without the schedule) and the published ratios."""
    cfg = model_config(name, resolution, **(overrides or {}))
    model = build_for_counting(cfg)
    result = count_schedule(model, cross_check) if cfg.time_patch_sizes else count(model, cross_check=cross_check)
    paper = paper_figures(name, cfg) or _row_figures(cfg)
    out = {
        "model": get_preset(name).name,
        **result,
        "paper_params": paper.params_m if paper else None,
        "paper_gflops": paper.gflops if paper else None,
        "paper_source": paper.source if paper else None,
        "paper_gflops_convention": paper.gflops_convention if paper else None,
        "config": cfg.to_dict(),
        "config_hash": cfg.config_hash(),
    }
    if cfg.time_patch_sizes:
        out["paper_relative_flops_pct"] = paper.relative_flops_pct if paper else None
        out["paper_fid50k"] = paper.fid50k if paper else None
    return out


def preset_rows(pattern: str = "*", resolution: int = 256) -> list[dict[str, Any]]:
    """Params and analytic GFLOPs of every matching preset, built on the meta device (no memory, no init)."""
    rows = []
    for name in list_models(pattern):
        cfg = model_config(name, resolution)
        with torch.device("meta"):
            model = build_model(cfg)
        paper = paper_figures(name, cfg)
        rows.append({
            "model": name, **{k: cfg.to_dict()[k] for k in ("patch_sizes", "depths", "hidden_size", "class_tokens",
                                                           "time_embedder", "modulation")},
            "params": sum(p.numel() for p in model.parameters()),
            "gflops_analytic": model.flops() / 1e9,
            # per network evaluation averaged over a trajectory (differs only with a patch schedule over time)
            "gflops_expected_analytic": (model.expected_flops() if cfg.time_patch_sizes else model.flops()) / 1e9,
            "time_patch_sizes": list(cfg.time_patch_sizes),
            "paper_params": paper.params_m if paper else None,
            "paper_gflops": paper.gflops if paper else None,
            "paper_gflops_convention": paper.gflops_convention if paper else None,
            "paper_relative_flops_pct": paper.relative_flops_pct if paper else None,
        })
    return rows
