"""Parameters and GFLOPs of any configuration, counted four ways.

- ``gflops``: fvcore's FlopCountAnalysis with attention written as explicit matmuls (one multiply-add =
  one FLOP, batch 1), the way DiT reported its numbers. Independent of fused attention at run time.
- ``gflops_analytic``: the closed form each component owns (``module.flops()``); must agree with fvcore.
- ``gflops_paper_convention``: how the MPDiT paper's table was produced: multiply-adds of all Linear/Conv
  layers plus (blocks x 2 x N^2 x D) with N the finest level's token count, i.e. attention charged as if
  every block attended over the fine grid. Labelled as such, never reported as the true count.
- ``gmacs_ptflops``: ptflops' aten backend, an independent cross-check.
"""

from __future__ import annotations

import io
import logging
import warnings
from contextlib import redirect_stdout

import torch
from torch import nn

from mpdit_bench.config import ModelConfig
from mpdit_bench.counting import analytic as flops
from mpdit_bench.models.blocks import explicit_attention
from mpdit_bench.models.multipatch import MultiPatchDiT


def example_inputs(cfg: ModelConfig, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.in_channels, cfg.input_size, cfg.input_size, generator=g)
    return x, torch.full((batch,), 0.5), torch.zeros(batch, dtype=torch.long)


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(all parameters including frozen position tables, trainable parameters)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def fvcore_flops(model: nn.Module, inputs: tuple) -> tuple[int, dict[str, int]]:
    """fvcore's total with attention as explicit matmuls, and its per-operator breakdown."""
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with explicit_attention(), torch.no_grad(), warnings.catch_warnings():
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


def ptflops_macs(model: nn.Module, inputs: tuple) -> int | None:
    """ptflops' aten-backend count, or None when ptflops cannot trace the model."""
    from ptflops import get_model_complexity_info

    x, t, y = inputs
    try:
        with explicit_attention(), redirect_stdout(io.StringIO()), warnings.catch_warnings():
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
    from mpdit_bench.models import build_model

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
