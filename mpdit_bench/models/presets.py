"""Named model configurations (timm-style) and the figures the papers published for them.

Published numbers live in ``mpdit_bench/paper/*.yaml``; a preset names the table rows its figures come from.
``paper`` figures are for 256 px (latent 32x32x4).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Callable

from mpdit_bench import paper as published
from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench.ppflow.schedule import default_schedule


@dataclass(frozen=True)
class PaperFigures:
    """What a paper printed for a preset at 256 px; None where it printed nothing."""

    params_m: float | None
    gflops: float | None
    source: str
    # PPFlow: test FLOPs per trajectory relative to the isotropic model, as printed
    relative_flops_pct: float | None = None
    fid50k: float | None = None
    gflops_convention: str | None = None  # how the printed GFLOPs were counted (mpdit_bench.paper.CONVENTIONS)


def figures(params_row: str | None, gflops_row: str | None = None) -> PaperFigures:
    """The preset's published params and GFLOPs, read from the rows ``PAPER/TABLE/ROW`` that print them
    (``gflops_row`` defaults to ``params_row``)."""
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


@dataclass(frozen=True)
class Preset:
    name: str
    config: ModelConfig
    description: str
    paper: PaperFigures | None = None


_PRESETS: dict[str, Preset] = {}
ALIASES = {"b": "MPDiT-B", "l": "MPDiT-L", "xl": "MPDiT-XL"}


def register_model(name: str, description: str, paper: PaperFigures | None = None
                   ) -> Callable[[Callable[[], dict[str, Any]]], Callable[[], dict[str, Any]]]:
    """Decorator: the function returns the preset's config values."""

    def add(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        if name in _PRESETS:
            raise ValueError(f"model preset {name!r} registered twice")
        _PRESETS[name] = Preset(name, ModelConfig.from_dict(fn(), source=f"preset {name}"), description, paper)
        return fn

    return add


def list_models(pattern: str = "*") -> list[str]:
    """Preset names matching a shell-style pattern (case-insensitive), in registration order."""
    return [n for n in _PRESETS if fnmatch.fnmatch(n.lower(), pattern.lower())]


def get_preset(name: str) -> Preset:
    key = ALIASES.get(name.lower(), name)
    for preset_name, preset in _PRESETS.items():
        if preset_name.lower() == key.lower():
            return preset
    raise ConfigError("model", name, "a preset name from `mpdit-bench models` ("
                      + ", ".join(_PRESETS) + ") or a shorthand " + ", ".join(ALIASES))


def model_config(name: str, resolution: int | None = None, **overrides: Any) -> ModelConfig:
    """The preset's config with ``overrides`` applied; ``resolution`` (px) sets the latent side (px / 8)."""
    if resolution is not None:
        if resolution % 8:
            raise ConfigError("resolution", resolution, "a multiple of 8 pixels, e.g. 256 or 512")
        overrides = {"input_size": resolution // 8, **overrides}
    return get_preset(name).config.replace(source=f"model {name} overrides", **overrides)


def paper_figures(name: str, cfg: ModelConfig) -> PaperFigures | None:
    """Published figures, only when ``cfg`` is exactly the published preset."""
    preset = get_preset(name)
    return preset.paper if preset.paper is not None and cfg == preset.config else None


# ---- DiT / SiT: isotropic, per-block adaLN-Zero, label embedding, learned sigma --------------------------
_DIT_SIZES = {"S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16), "XL": (1152, 28, 16)}
# DiT and SiT are one network; the XL params are printed only in the 512 px tables (their position tables
# differ by 0.9 M, below the printed precision of 675).
_DIT_PAPER = {
    "DiT-B/2": figures("mpdit/3/dit-b-2"),
    "SiT-B/2": figures("mpdit/3/dit-b-2", "mpdit/1/sit-b-2-e80"),
    "DiT-XL/2": figures("mpdit/9/dit-xl-2", "mpdit/1/dit-xl-2-e80"),
    "SiT-XL/2": figures("mpdit/9/sit-xl-2-sde", "mpdit/1/sit-xl-2-e80"),
}


def _dit(size: str, patch: int) -> dict[str, Any]:
    dim, depth, heads = _DIT_SIZES[size]
    return dict(depths=[depth], patch_sizes=[patch], hidden_size=dim, num_heads=heads, learn_sigma=True,
                modulation="per_block", time_embedder="mlp", time_embedder_layers=2, class_tokens=0)


for _family, _what in (("DiT", "original DiT"), ("SiT", "SiT (same network as DiT)")):
    for _size in _DIT_SIZES:
        for _patch in (2, 4, 8):
            _name = f"{_family}-{_size}/{_patch}"
            register_model(_name, f"{_what}, isotropic p={_patch}", _DIT_PAPER.get(_name))(
                lambda s=_size, p=_patch: _dit(s, p))


# ---- Table 3 chain: DiT -> shared AdaIN -> class tokens -> FNO time (= DiT dagger) -> MPDiT ----------------
_CHAIN_PAPER = {
    "DiT-B/2+shared": figures("mpdit/3/shared-adain"),
    "DiT-B/2+shared+tokens": figures("mpdit/3/class-tokens"),
    "DiT-B/2+shared+tokens+fno": figures("mpdit/3/fno-time"),
    "DiT-XL/2+shared+tokens+fno": figures("mpdit/4/dit-xl-2-dagger"),
}
_CHAIN = (
    ("+shared", "shared AdaIN, time and class combined as in DiT",
     dict(modulation="shared")),
    ("+shared+tokens", "shared AdaIN, m=16 class tokens",
     dict(modulation="shared", class_tokens=16)),
    ("+shared+tokens+fno", "shared AdaIN, m=16 class tokens, FNO x3 time embedding (DiT dagger)",
     dict(modulation="shared", class_tokens=16, time_embedder="fno", time_embedder_layers=3)),
)
for _size in ("B", "XL"):
    for _suffix, _what, _changes in _CHAIN:
        _name = f"DiT-{_size}/2{_suffix}"
        # The chain moves toward MPDiT, which predicts 4 channels (no learned sigma).
        register_model(_name, _what, _CHAIN_PAPER.get(_name))(
            lambda s=_size, c=_changes: {**_dit(s, 2), "learn_sigma": False, **c})


# ---- MPDiT: (4, 2) hierarchy, k = 6 refine blocks --------------------------------------------------------
_MPDIT = {"B": (768, (6, 6), 12, figures("mpdit/3/mpdit-b")),
          "L": (1024, (18, 6), 16, None),
          "XL": (1152, (22, 6), 16, figures("mpdit/4/mpdit-xl-k6"))}
for _size, (_dim, _depths, _heads, _paper) in _MPDIT.items():
    register_model(f"MPDiT-{_size}", f"MPDiT, patches (4, 2), depths {_depths}", _paper)(
        lambda d=_dim, ds=_depths, h=_heads: dict(
            depths=list(ds), patch_sizes=[4, 2], hidden_size=d, num_heads=h, learn_sigma=False,
            modulation="shared", class_tokens=16, time_embedder="fno", time_embedder_layers=3,
            upsample="linear"))


# ---- PPFlow: SiT backbone with a patch schedule over time (suite t: 0 data, 1 noise) ---------------------
# Their t runs 0 noise -> 1 data with "t <= 0.5" coarse; here that is t >= 0.5. Three levels: 4x4 for
# t >= 0.5, 4x2 (2 rows x 4 columns, written "2x4" here) for 0.25 <= t < 0.5, 2x2 below 0.25.
PPF_SCHEDULES = {stages: default_schedule(stages, 2) for stages in (2, 3)}
for _size in ("B", "XL"):
    for _levels, (_shapes, _bounds) in PPF_SCHEDULES.items():
        _name = f"PPF-{_size}-{_levels}"
        register_model(_name, f"PPFlow on SiT-{_size}/2, patches {_shapes} over t, boundaries {_bounds}",
                       ppflow_figures(f"ppflow/main/{_name.lower()}"))(
            lambda s=_size, sh=_shapes, b=_bounds: {**_dit(s, 2), "time_patch_sizes": sh, "time_boundaries": b})


# ---- MPDiT + PPFlow (no published numbers): the coarse path uses p=8 at t >= 0.5, p=4 below ------------------
for _size in ("B", "XL"):
    register_model(f"MPDiT-{_size}+PPF-2", f"MPDiT-{_size} whose coarse path uses 8x8 patches for t >= 0.5, "
                   "4x4 below (fine path always 2x2)")(
        lambda s=_size: {**get_preset(f"MPDiT-{s}").config.to_dict(), "time_patch_sizes": ["8x8", "4x4"],
                         "time_boundaries": [0.5]})
