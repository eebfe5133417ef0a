"""The figures the papers published for the model presets, and for any configuration a table row builds.

Presets (``mpdit_bench.models.presets``) name architectures only; which rows print a preset's numbers is
written here, and the rows are read from ``paper/*.yaml`` on first use. Figures are for 256 px (latent
32x32x4).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from mpdit_bench import paper as published
from mpdit_bench.config import ModelConfig
from mpdit_bench.models import get_preset


@dataclass(frozen=True)
class PaperFigures:
    """What a paper printed for an architecture at 256 px; None where it printed nothing."""

    params_m: float | None
    gflops: float | None
    source: str
    # PPFlow: test FLOPs per trajectory relative to the isotropic model, as printed
    relative_flops_pct: float | None = None
    fid50k: float | None = None
    gflops_convention: str | None = None  # how the printed GFLOPs were counted (mpdit_bench.paper.CONVENTIONS)


# preset -> (the row printing its params, the row printing its GFLOPs when another one). DiT and SiT are one
# network; the XL params are printed only in the 512 px tables (their position tables differ by 0.9 M, below
# the printed precision of 675).
PRESET_ROWS: dict[str, tuple[str, ...]] = {
    "DiT-B/2": ("mpdit/3/dit-b-2",),
    "SiT-B/2": ("mpdit/3/dit-b-2", "mpdit/1/sit-b-2-e80"),
    "DiT-XL/2": ("mpdit/9/dit-xl-2", "mpdit/1/dit-xl-2-e80"),
    "SiT-XL/2": ("mpdit/9/sit-xl-2-sde", "mpdit/1/sit-xl-2-e80"),
    "DiT-B/2+shared": ("mpdit/3/shared-adain",),
    "DiT-B/2+shared+tokens": ("mpdit/3/class-tokens",),
    "DiT-B/2+shared+tokens+fno": ("mpdit/3/fno-time",),
    "DiT-XL/2+shared+tokens+fno": ("mpdit/4/dit-xl-2-dagger",),
    "MPDiT-B": ("mpdit/3/mpdit-b",),
    "MPDiT-XL": ("mpdit/4/mpdit-xl-k6",),
}
# PPFlow's presets: their row of PPFlow's main results (relative test FLOPs and FID-50K)
PPFLOW_ROWS: dict[str, str] = {f"PPF-{size}-{stages}": f"ppflow/main/ppf-{size.lower()}-{stages}"
                               for size in ("B", "XL") for stages in (2, 3)}


def figures(params_row: str | None, gflops_row: str | None = None) -> PaperFigures:
    """Params and GFLOPs read from the rows ``PAPER/TABLE/ROW`` that print them (``gflops_row`` defaults to
    ``params_row``)."""
    gflops_row = gflops_row or params_row
    p = published.row(params_row) if params_row else None
    g = published.row(gflops_row)
    where = [published.table(f"{r.paper}/{r.table}").name + f" ({what})"
             for r, what in ((p, "params"), (g, "GFLOPs")) if r is not None]
    source = published.table(f"{g.paper}/{g.table}").name if p is g else ", ".join(where)
    return PaperFigures(p.values.get("params") if p else None, g.values.get("gflops"), source,
                        gflops_convention=g.gflops_convention)


def ppflow_figures(row: str) -> PaperFigures:
    r = published.row(row)
    return PaperFigures(None, None, f"{published.table(f'{r.paper}/{r.table}').name}, row {r.label}",
                        relative_flops_pct=r.values["test_flops"], fid50k=r.values["fid"])


@cache
def _preset_figures(name: str) -> PaperFigures | None:
    if name in PRESET_ROWS:
        return figures(*PRESET_ROWS[name])
    if name in PPFLOW_ROWS:
        return ppflow_figures(PPFLOW_ROWS[name])
    return None


def paper_figures(name: str, cfg: ModelConfig | None = None) -> PaperFigures | None:
    """The figures published for preset ``name``, only when ``cfg`` is exactly that preset (default: it is)."""
    preset = get_preset(name)
    if cfg is not None and cfg != preset.config:
        return None
    return _preset_figures(preset.name)


def row_figures(cfg: ModelConfig) -> PaperFigures | None:
    """Figures of a published row with exactly this architecture (e.g. a Table 7 design set by overrides)."""
    for row in published.rows_for(cfg):
        table = published.table(f"{row.paper}/{row.table}")
        kinds = {c.kind: row.values.get(c.key) for c in table.columns}
        if kinds.get("params") is not None or kinds.get("gflops") is not None:
            return PaperFigures(kinds.get("params"), kinds.get("gflops"), f"{table.name}, row {row.label}",
                                gflops_convention=row.gflops_convention)
    return None


__all__ = ["PPFLOW_ROWS", "PRESET_ROWS", "PaperFigures", "figures", "paper_figures", "ppflow_figures",
           "row_figures"]
