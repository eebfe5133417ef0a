"""Parameters and GFLOPs of any configuration: every count the suite reports is computed here.

- ``gflops``: fvcore's FlopCountAnalysis with attention written as explicit matmuls (one multiply-add =
  one FLOP, batch 1), the way DiT reported its numbers. Independent of fused attention at run time.
- ``gflops_analytic``: the closed form each component owns (``module.flops()``); must agree with fvcore.
- ``gflops_paper_convention``: how the MPDiT paper's table was produced: multiply-adds of all Linear/Conv
  layers plus (blocks x 2 x N^2 x D) with N the finest level's token count, i.e. attention charged as if
  every block attended over the fine grid. Labelled as such, never reported as the true count.
- ``gmacs_ptflops``: ptflops' aten backend, an independent cross-check.

A model with a patch schedule over time (PPFlow) is counted per stage and averaged over a trajectory
(``trajectory_flops``); training compute per sample is ``training_flops_per_sample``. ``analytic_counts``
gives params and both GFLOPs conventions on the meta device in milliseconds (dry runs, search budgets).
"""

from __future__ import annotations

import io
import logging
import warnings
from contextlib import redirect_stdout
from typing import Any, Sequence

import torch
from torch import nn

from mpdit_bench.components import flops
from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench.models import MultiPatchDiT, build_model, get_preset, list_models, model_config
from mpdit_bench.models.blocks import explicit_attention
from mpdit_bench.paper.figures import paper_figures, row_figures
from mpdit_bench.components.time_embed import complex_pairs


def example_inputs(cfg: ModelConfig, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.in_channels, cfg.input_size, cfg.input_size, generator=g)
    return x, torch.full((batch,), 0.5), torch.zeros(batch, dtype=torch.long)


def param_count(model: nn.Module) -> int:
    """All parameters, frozen position tables included and a complex weight counted as one number (as the
    papers count); ``storage_param_count`` is the number of real values stored."""
    return storage_param_count(model) - complex_pairs(model)


def storage_param_count(model: nn.Module) -> int:
    """Real values stored: a complex weight (FNO spectral layer) is two real tensors."""
    return sum(p.numel() for p in model.parameters())


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(all parameters including frozen position tables, trainable parameters), complex weights as one."""
    params = list(model.parameters())
    return param_count(model), sum(p.numel() for p in params if p.requires_grad) - complex_pairs(model)


def fvcore_flops(model: nn.Module, inputs: tuple) -> tuple[int, dict[str, int]]:
    """fvcore's total with attention as explicit matmuls, and its per-operator breakdown."""
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with explicit_attention(model), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's tracer and imports warn about deprecated torch.jit APIs
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, inputs)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return int(analysis.total()), {k: int(v) for k, v in analysis.by_operator().items()}


def paper_convention_flops(cfg: ModelConfig, linear_conv: int, conv_transpose_output_extra: int = 0) -> int:
    """Linear and Conv multiply-adds (fvcore's "linear" and "conv" operators, transposed conv included, or
    the analytic count's "linear" kind), a transposed conv charged per output position (the analytic tally's
    "conv_transpose_output_extra": how the paper's ConvTranspose row was counted), plus attention charged at
    the finest level's token count in every block."""
    return (linear_conv + conv_transpose_output_extra
            + cfg.depth * flops.attention_matmuls(cfg.grid(-1) ** 2, cfg.hidden_size))


def conv_transpose_output_extra(model: nn.Module) -> int:
    """What charging every ConvTranspose2d per output position adds to the true count (0 without one)."""
    with flops.tally() as kinds:
        model.flops()
    return kinds["conv_transpose_output_extra"]


def analytic_counts(cfg: ModelConfig) -> dict[str, float]:
    """Params, true GFLOPs (== fvcore) and the paper-convention GFLOPs of ``cfg``, batch 1, on the meta
    device. The paper convention takes the Linear and Conv FLOPs from the components' own counts by kind."""
    with torch.device("meta"):
        model = build_model(cfg)
    with flops.tally() as by_kind:
        true = model.flops()
    paper = paper_convention_flops(cfg, by_kind["linear"], by_kind["conv_transpose_output_extra"])
    return {"params": param_count(model), "gflops": true / 1e9, "gflops_paper_convention": paper / 1e9}


def trajectory_flops(model: MultiPatchDiT, fractions: Sequence[float] | None = None) -> float:
    """Analytic FLOPs per network evaluation averaged over a trajectory: sum_s fraction_s x flops(s).
    ``fractions`` default to the stages' shares of t (uniform steps); a sampler's own grid gives its own
    (``PatchSchedule.evaluation_fractions``). A model without a schedule: its one forward."""
    if model.schedule is None:
        return float(model.flops())
    fractions = model.schedule.fractions() if fractions is None else fractions
    return sum(f * model.flops(s) for s, f in enumerate(fractions))


def training_flops_per_sample(model: MultiPatchDiT, proportions: Sequence[float] | None = None) -> float:
    """Analytic training FLOPs for one sample: 3 x forward (backward ~ 2 x forward), the forward averaged
    over the stages in the training ``proportions`` (default: the stages' shares of t)."""
    if model.schedule is None:
        return 3.0 * model.flops()
    sched = model.schedule
    proportions = sched.fractions() if proportions is None else tuple(proportions)
    if len(proportions) != sched.num_stages:
        raise ConfigError("stage_proportions", list(proportions), f"{sched.num_stages} numbers, one per stage")
    total = float(sum(proportions))
    return 3.0 * trajectory_flops(model, [p / total for p in proportions])


def ptflops_macs(model: nn.Module, inputs: tuple) -> int | None:
    """ptflops' aten-backend count, or None when ptflops cannot trace the model."""
    from ptflops import get_model_complexity_info

    x, t, y = inputs
    try:
        with explicit_attention(model), redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macs, _ = get_model_complexity_info(
                model, tuple(x.shape[1:]), input_constructor=lambda _: {"x": x, "t": t, "y": y},
                as_strings=False, print_per_layer_stat=False, backend="aten")
    except Exception:  # a cross-check only: its failure must not hide the main count
        return None
    return None if macs is None else int(macs)


def build_for_counting(cfg: ModelConfig) -> nn.Module:
    """The model with zero-filled weights: FLOPs depend only on shapes, and random init of a
    675M-parameter model costs more than counting it."""
    with torch.device("meta"):
        model = build_model(cfg)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.zero_()
    for module in model.modules():  # non-persistent buffers with meaning (FNO grid) are rebuilt
        if hasattr(module, "grid") and isinstance(module.grid, torch.Tensor):
            module.grid.copy_(torch.linspace(-1.0, 1.0, module.grid.numel()))
    return model


def count(model: MultiPatchDiT, cross_check: bool = True) -> dict:
    """All counts for one built model at batch 1."""
    cfg = model.cfg
    model.eval()
    inputs = example_inputs(cfg)
    params, trainable = param_counts(model)
    ptf = ptflops_macs(model, inputs) if cross_check else None
    total, by_operator = fvcore_flops(model, inputs)
    extra = conv_transpose_output_extra(model)
    return {
        "resolution": cfg.input_size * 8,
        "input_size": cfg.input_size,
        "params": params,
        "params_trainable": trainable,
        "params_stored": storage_param_count(model),  # real values: a complex weight is two
        "gflops": total / 1e9,
        "gflops_analytic": model.flops() / 1e9,
        "gflops_paper_convention": paper_convention_flops(
            cfg, by_operator.get("linear", 0) + by_operator.get("conv", 0), extra) / 1e9,
        # the part of the paper convention that charges ConvTranspose2d per output position
        "gflops_conv_transpose_output_extra": extra / 1e9,
        "gmacs_ptflops": None if ptf is None else ptf / 1e9,
    }


# ---- PPFlow: a patch schedule over time ----------------------------------------------------------------------
class _AtStage(nn.Module):
    """A schedule model pinned to one stage, so that the counters above trace exactly that stage."""

    def __init__(self, model: nn.Module, stage: int):
        super().__init__()
        self.model, self.stage, self.cfg = model, stage, model.cfg

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model(x, t, y, stage=self.stage)

    def flops(self) -> int:
        return self.model.flops(self.stage)


def count_schedule(model: nn.Module, cross_check: bool = True) -> dict:
    """``count`` at the finest stage (one forward pass at low noise; identical to the model without the
    schedule, which is the isotropic / MPDiT reference), plus every stage and the trajectory average:
    sum over stages of (time fraction x GFLOPs at that stage's tokens), and its ratio to the reference."""
    sched = model.schedule
    model.eval()
    inputs = example_inputs(model.cfg)
    result = count(_AtStage(model, sched.fine_stage), cross_check=cross_check)
    stages = []
    for s, fraction in enumerate(sched.fractions()):
        lo, hi = sched.time_range(s)
        true = result["gflops"] if s == sched.fine_stage else fvcore_flops(_AtStage(model, s), inputs)[0] / 1e9
        stages.append({"stage": s, "patch": sched.name(s), "t_range": [lo, hi], "time_fraction": fraction,
                       "tokens": model.stage_tokens(s), "gflops": true, "gflops_analytic": model.flops(s) / 1e9})
    expected = sum(st["time_fraction"] * st["gflops"] for st in stages)
    expected_analytic = sum(st["time_fraction"] * st["gflops_analytic"] for st in stages)
    return {
        **result,
        "stages": stages,
        "gflops_expected": expected,
        "gflops_expected_analytic": expected_analytic,
        "reference_gflops": result["gflops"],
        "relative_flops_pct": 100.0 * expected / result["gflops"],
        "relative_flops_pct_analytic": 100.0 * expected_analytic / result["gflops_analytic"],
    }


# ---- a named preset with overrides, as plain dicts for the CLI, sweeps and reports -------------------------
def count_config(cfg: ModelConfig, cross_check: bool = True) -> dict[str, Any]:
    """Every count of a resolved config (a schedule model: its finest stage, every stage and the trajectory
    average), with the config and its hash."""
    model = build_for_counting(cfg)
    result = count_schedule(model, cross_check) if cfg.time_patch_sizes else count(model, cross_check=cross_check)
    return {**result, "config": cfg.to_dict(), "config_hash": cfg.config_hash()}


def count_model(name: str, resolution: int = 256, overrides: dict[str, Any] | None = None,
                cross_check: bool = True) -> dict[str, Any]:
    """Every count for a preset with overrides; ``paper_*`` are set only for an unmodified published preset.

    A model with a patch schedule over time (PPFlow) reports the same keys for its finest stage (one forward
    pass at low noise), plus ``stages``, ``gflops_expected`` (per network evaluation, averaged over a
    trajectory), ``relative_flops_pct`` (vs. the same model without the schedule) and the published ratios."""
    cfg = model_config(name, resolution, **(overrides or {}))
    paper = paper_figures(name, cfg) or row_figures(cfg)
    out = {
        "model": get_preset(name).name,
        **count_config(cfg, cross_check),
        "paper_params": paper.params_m if paper else None,
        "paper_gflops": paper.gflops if paper else None,
        "paper_source": paper.source if paper else None,
        "paper_gflops_convention": paper.gflops_convention if paper else None,
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
            "params": param_count(model),
            "gflops_analytic": model.flops() / 1e9,
            # per network evaluation averaged over a trajectory (differs only with a patch schedule over time)
            "gflops_expected_analytic": trajectory_flops(model) / 1e9,
            "time_patch_sizes": list(cfg.time_patch_sizes),
            "paper_params": paper.params_m if paper else None,
            "paper_gflops": paper.gflops if paper else None,
            "paper_gflops_convention": paper.gflops_convention if paper else None,
            "paper_relative_flops_pct": paper.relative_flops_pct if paper else None,
        })
    return rows
