"""Named model configurations (timm-style): architectures only.

The figures the papers published for a preset are looked up in ``mpdit_bench.paper.figures``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Callable

from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench.ppflow.schedule import default_schedule


@dataclass(frozen=True)
class Preset:
    name: str
    config: ModelConfig
    description: str


_PRESETS: dict[str, Preset] = {}
ALIASES = {"b": "MPDiT-B", "l": "MPDiT-L", "xl": "MPDiT-XL"}


def register_model(name: str, description: str
                   ) -> Callable[[Callable[[], dict[str, Any]]], Callable[[], dict[str, Any]]]:
    """Decorator: the function returns the preset's config values."""

    def add(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        if name in _PRESETS:
            raise ValueError(f"model preset {name!r} registered twice")
        _PRESETS[name] = Preset(name, ModelConfig.from_dict(fn(), source=f"preset {name}"), description)
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
        if resolution < 8 or resolution % 8:
            raise ConfigError("resolution", resolution, "a positive multiple of 8 pixels, e.g. 256 or 512")
        overrides = {"input_size": resolution // 8, **overrides}
    return get_preset(name).config.replace(source=f"model {name} overrides", **overrides)


# ---- DiT / SiT: isotropic, per-block adaLN-Zero, label embedding, learned sigma --------------------------
_DIT_SIZES = {"S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16), "XL": (1152, 28, 16)}


def _dit(size: str, patch: int) -> dict[str, Any]:
    dim, depth, heads = _DIT_SIZES[size]
    return dict(depths=[depth], patch_sizes=[patch], hidden_size=dim, num_heads=heads, learn_sigma=True,
                modulation="per_block", time_embedder="mlp", time_embedder_layers=2, class_tokens=0)


for _family, _what in (("DiT", "original DiT"), ("SiT", "SiT (same network as DiT)")):
    for _size in _DIT_SIZES:
        for _patch in (2, 4, 8):
            _name = f"{_family}-{_size}/{_patch}"
            register_model(_name, f"{_what}, isotropic p={_patch}")(
                lambda s=_size, p=_patch: _dit(s, p))


# ---- Table 3 chain: DiT -> shared AdaIN -> class tokens -> FNO time (= DiT dagger) -> MPDiT ----------------
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
        register_model(_name, _what)(
            lambda s=_size, c=_changes: {**_dit(s, 2), "learn_sigma": False, **c})


# ---- MPDiT: (4, 2) hierarchy, k = 6 refine blocks --------------------------------------------------------
_MPDIT = {"B": (768, (6, 6), 12), "L": (1024, (18, 6), 16), "XL": (1152, (22, 6), 16)}
for _size, (_dim, _depths, _heads) in _MPDIT.items():
    register_model(f"MPDiT-{_size}", f"MPDiT, patches (4, 2), depths {_depths}")(
        lambda d=_dim, ds=_depths, h=_heads: dict(
            depths=list(ds), patch_sizes=[4, 2], hidden_size=d, num_heads=h, learn_sigma=False,
            modulation="shared", class_tokens=16, time_embedder="fno", time_embedder_layers=3,
            upsample="linear"))

# ---- MPDiT with three levels (the authors' MPDiTv2): patches (8, 4, 2), their depths per level -------------
# (widths and heads as the two-level sizes)
_MPDIT_V2 = {"B": (6, 4, 2), "L": (14, 6, 4), "XL": (14, 8, 6)}
for _size, _depths in _MPDIT_V2.items():
    register_model(f"MPDiTv2-{_size}", f"MPDiT with three levels, patches (8, 4, 2), depths {_depths}")(
        lambda s=_size, d=_depths: {**get_preset(f"MPDiT-{s}").config.to_dict(), "depths": list(d),
                                    "patch_sizes": [8, 4, 2]})


# ---- PPFlow: SiT backbone with a patch schedule over time (suite t: 0 data, 1 noise) ---------------------
# Their t runs 0 noise -> 1 data with "t <= 0.5" coarse; here that is t >= 0.5. Three levels: 4x4 for
# t >= 0.5, 4x2 (2 rows x 4 columns, written "2x4" here) for 0.25 <= t < 0.5, 2x2 below 0.25.
PPF_SCHEDULES = {stages: default_schedule(stages, 2) for stages in (2, 3)}
for _size in ("B", "XL"):
    for _levels, (_shapes, _bounds) in PPF_SCHEDULES.items():
        _name = f"PPF-{_size}-{_levels}"
        register_model(_name, f"PPFlow on SiT-{_size}/2, patches {_shapes} over t, boundaries {_bounds}")(
            lambda s=_size, sh=_shapes, b=_bounds: {**_dit(s, 2), "time_patch_sizes": sh, "time_boundaries": b})


# ---- MPDiT + PPFlow (no published numbers): the coarse path uses p=8 at t >= 0.5, p=4 below ------------------
for _size in ("B", "XL"):
    register_model(f"MPDiT-{_size}+PPF-2", f"MPDiT-{_size} whose coarse path uses 8x8 patches for t >= 0.5, "
                   "4x4 below (fine path always 2x2)")(
        lambda s=_size: {**get_preset(f"MPDiT-{s}").config.to_dict(), "time_patch_sizes": ["8x8", "4x4"],
                         "time_boundaries": [0.5]})
