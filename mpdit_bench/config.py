"""Model configuration: one validated dataclass builds every model of the suite.

Values come from presets, YAML files and ``--set key=value`` overrides; all of them pass through
``ModelConfig.from_dict``, which refuses bad input with a message naming the source, the key, the value
and what is allowed, before any model is built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from mpdit_bench import registry
from mpdit_bench.validation import ConfigError, Key, check_section, is_bool, is_int, is_num


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a model. Levels run coarse to fine; one level is an isotropic DiT."""

    depths: tuple[int, ...] = (28,)
    patch_sizes: tuple[int, ...] = (2,)
    refine_depth: int | None = None  # k: shorthand for two levels, depths = (total - k, k)
    hidden_size: int = 1152
    num_heads: int = 16
    mlp_ratio: float = 4.0
    upsample: str = "linear"  # the upsample block's expand; then its refine (components/upsample.py)
    upsample_refine: str = "linear"
    upsample_refine_ratio: int = 4  # hidden width / D of the "mlp" refine
    time_embedder: str = "mlp"
    time_embedder_layers: int = 2
    # the "mlp" (sinusoid) embedder sees time_embed_scale * t: 1000 as DiT's integer steps, 1 as the MPDiT
    # authors, SiT and PPFlow (raw t); the "fno" embedder always takes raw t
    time_embed_scale: float = 1000.0
    # FNO spectral weights: "fno" (1/C^2) U[0, 1) as the original FNO code, "authors" N(0, 1) as MPDiT's
    # Algorithm 2 (real and imaginary parts alike)
    fno_init: str = "fno"
    class_tokens: int = 0  # m; 0 means DiT's label embedding added into the modulation input
    modulation: str = "per_block"
    learn_sigma: bool = False
    in_channels: int = 4
    num_classes: int = 1000
    input_size: int = 32  # latent side (256 px image / 8)
    # PPFlow's patch schedule over sampling time (empty = none). Patch shapes "RxC" (rows x columns),
    # coarse (noisy, large t) first; they replace the first level's patch per stage. Boundaries are in
    # the suite's t (0 data, 1 noise), strictly decreasing: stage s holds b_s <= t < b_(s-1).
    time_patch_sizes: tuple[str, ...] = ()
    time_boundaries: tuple[float, ...] = ()
    # the per-stage level embedding of a schedule model: "zero" (a model converted from one without a schedule
    # starts as that model) or "normal" N(0, 0.02) as PPFlow, which also keeps it when adapting a SiT
    level_embed_init: str = "zero"

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str | None = None) -> "ModelConfig":
        """Type-check and validate ``values`` (unknown keys refused); raises ConfigError."""
        given = check_section(values, MODEL_KEYS, source, defaults=False)
        return _validated(cls(**{key: _CONVERT[_FIELD_KINDS[key]](v) for key, v in given.items()}), source)

    def replace(self, source: str | None = None, **overrides: Any) -> "ModelConfig":
        """A new validated config with ``overrides`` applied on top of this one."""
        _check_agreement(self, overrides, source)
        values = self.to_dict()
        if "refine_depth" in overrides or "depths" in overrides:
            values["refine_depth"] = None
        values.update(overrides)
        return ModelConfig.from_dict(values, source)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    def config_hash(self) -> str:
        """Stable short hash of the resolved config (used for run ids)."""
        blob = json.dumps(identity_values(self.to_dict(), CONFIG_HASH_GENERATION), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    # ---- derived geometry -----------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return sum(self.depths)

    @property
    def num_levels(self) -> int:
        return len(self.patch_sizes)

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.learn_sigma else self.in_channels

    def grid(self, level: int) -> int:
        """Token grid side at ``level`` (0 = coarsest)."""
        return self.input_size // self.patch_sizes[level]


# ---- identity: which keys a config hash or a run id is computed over ------------------------------
# Every ModelConfig key with the generation of ids it joined. An id of generation g (config hashes 0, run
# ids 1) leaves out each key of a later generation while that key holds its default, so adding a key (at
# the next generation, with a default that keeps the old behaviour) changes no finished run's id.
KEY_GENERATIONS: dict[str, int] = {
    **dict.fromkeys(("depths", "patch_sizes", "refine_depth", "hidden_size", "num_heads", "mlp_ratio", "upsample",
                     "time_embedder", "time_embedder_layers", "class_tokens", "modulation", "learn_sigma",
                     "in_channels", "num_classes", "input_size"), 0),
    "time_patch_sizes": 1, "time_boundaries": 1,
    "upsample_refine": 2, "upsample_refine_ratio": 2,
    "time_embed_scale": 3, "fno_init": 3, "level_embed_init": 3,
}
CONFIG_HASH_GENERATION = 0
RUN_ID_GENERATION = 1


def identity_values(values: Mapping[str, Any], generation: int) -> dict[str, Any]:
    """``values`` (a config as `ModelConfig.to_dict` writes it) as an id of ``generation`` sees them."""
    defaults = ModelConfig().to_dict()
    return {key: value for key, value in values.items()
            if not (KEY_GENERATIONS[key] > generation and value == defaults[key])}
FNO_INITS = ("fno", "authors")
LEVEL_EMBED_INITS = ("zero", "normal")
INIT_KEYS = ("fno_init", "level_embed_init")  # how untrained weights are drawn; not the function a model computes
# what a source's recipe sets (its conventions), not the architecture a published row names
RECIPE_KEYS = ("time_embed_scale", *INIT_KEYS)


def parse_patch_shape(value: Any) -> tuple[int, int] | None:
    """(rows, cols) from 4, "2x4" or [2, 4]; None when ``value`` is none of these."""
    if is_int(value):
        return value, value
    if isinstance(value, str):
        rows, sep, cols = value.lower().partition("x")
        if sep and rows.strip().isdigit() and cols.strip().isdigit():
            return int(rows), int(cols)
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(is_int(v) for v in value):
        return value[0], value[1]
    return None


def patch_shape_name(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}"


# ---- the key table: each field's type check, its words, and its canonical form -----------------------
_FIELD_KINDS: dict[str, str] = {
    "depths": "int_list", "patch_sizes": "int_list", "refine_depth": "optional_int",
    "hidden_size": "int", "num_heads": "int", "mlp_ratio": "float", "upsample": "str",
    "upsample_refine": "str", "upsample_refine_ratio": "int",
    "time_embedder": "str", "time_embedder_layers": "int", "time_embed_scale": "float", "fno_init": "str",
    "class_tokens": "int",
    "modulation": "str", "learn_sigma": "bool", "in_channels": "int", "num_classes": "int",
    "input_size": "int", "time_patch_sizes": "patch_shape_list", "time_boundaries": "float_list",
    "level_embed_init": "str",
}
_KINDS: dict[str, tuple[Any, str]] = {  # kind: (check, allowed)
    "int": (is_int, "an integer"),
    "optional_int": (lambda v: v is None or is_int(v), "an integer or null"),
    "float": (is_num, "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (is_bool, "true or false"),
    "int_list": (lambda v: isinstance(v, (list, tuple)) and all(is_int(x) for x in v),
                 "a list of integers, e.g. [4,2]"),
    "float_list": (lambda v: isinstance(v, (list, tuple)) and all(is_num(x) for x in v),
                   "a list of numbers, e.g. [0.5, 0.25]"),
    "patch_shape_list": (lambda v: isinstance(v, (list, tuple)) and all(parse_patch_shape(x) is not None for x in v),
                         'a list of patch shapes "RxC" (rows x columns), [R, C] or an integer, '
                         'e.g. ["4x4", "2x4", "2x2"]'),
}
_CONVERT = {"int": lambda v: v, "optional_int": lambda v: v, "str": lambda v: v, "bool": lambda v: v,
            "float": float, "int_list": tuple, "float_list": lambda v: tuple(float(x) for x in v),
            # canonical "RxC" strings: hashable, JSON and YAML friendly
            "patch_shape_list": lambda v: tuple(patch_shape_name(parse_patch_shape(x)) for x in v)}
MODEL_KEYS: dict[str, Key] = {f.name: Key(f.default, *_KINDS[_FIELD_KINDS[f.name]])
                              for f in dataclasses.fields(ModelConfig)}


def _check_agreement(base: ModelConfig, overrides: Mapping[str, Any], source: str | None) -> None:
    """Overrides that contradict each other, or the config they apply to, are refused, never resolved."""
    depths, k = overrides.get("depths"), overrides.get("refine_depth")
    if depths is not None and k is not None:
        if not (isinstance(depths, (list, tuple)) and len(depths) == 2 and depths[1] == k):
            shown = list(depths) if isinstance(depths, (list, tuple)) else depths
            raise ConfigError("refine_depth", k, f"not together with depths={shown} (refine_depth k means depths = "
                              f"(total - k, k)): set one of them, or depths [N, {k}]", source)
    patches = overrides.get("patch_sizes")
    if isinstance(patches, (list, tuple)) and depths is None and len(patches) != len(base.depths) and \
            (k is None or len(patches) != 2):
        raise ConfigError("patch_sizes", patches, f"{len(base.depths)} patch size(s), one per level of depths="
                          f"{list(base.depths)}; to change the hierarchy set depths (one block count per level) "
                          "or, for two levels, refine_depth with it", source)


def _validated(cfg: ModelConfig, source: str | None) -> ModelConfig:
    # the components fill the registry; they import torch, so they load when a config is first checked,
    # not when the command line starts
    from mpdit_bench import components  # noqa: F401

    def fail(key: str, allowed: str, value: Any = None) -> None:
        raise ConfigError(key, getattr(cfg, key) if value is None else value, allowed, source)

    for key in ("hidden_size", "num_heads", "in_channels", "num_classes", "input_size",
                "time_embedder_layers", "upsample_refine_ratio"):
        if getattr(cfg, key) < 1:
            fail(key, "an integer >= 1")
    if cfg.class_tokens < 0:
        fail("class_tokens", "an integer >= 0 (0 = label embedding in the modulation, m >= 1 = m prefix tokens)")
    if cfg.mlp_ratio <= 0:
        fail("mlp_ratio", "a number > 0")
    if cfg.time_embed_scale <= 0:
        fail("time_embed_scale", "a number > 0 (1000: DiT's integer steps, 1: raw t as MPDiT's authors, SiT, PPFlow)")
    if cfg.fno_init not in FNO_INITS:
        fail("fno_init", ", ".join(FNO_INITS) + " (U[0, 1)/C^2 as the FNO code, N(0, 1) as MPDiT's authors)")
    if cfg.hidden_size % cfg.num_heads:
        fail("num_heads", f"a divisor of hidden_size={cfg.hidden_size}")
    if cfg.hidden_size % 4:
        fail("hidden_size", "a multiple of 4 (2-D sin-cos position embedding)")
    for key, kind in (("upsample", "upsample"), ("upsample_refine", "upsample_refine"),
                      ("time_embedder", "time_embedder"),
                      ("modulation", "modulation")):
        if getattr(cfg, key) not in registry.names(kind):
            fail(key, ", ".join(registry.names(kind)))

    patches, depths = cfg.patch_sizes, cfg.depths
    if not patches:
        fail("patch_sizes", "a non-empty list of patch sizes, coarse first, e.g. [4,2]")
    if any(p < 1 for p in patches):
        fail("patch_sizes", "positive integers")
    if any(a <= b for a, b in zip(patches, patches[1:])):
        fail("patch_sizes", "strictly decreasing patch sizes (each level finer than the last), e.g. [8,4,2]")
    for coarse, fine in zip(patches, patches[1:]):
        if coarse % fine:
            fail("patch_sizes", f"each patch size a multiple of the next ({coarse} is not a multiple of {fine})")
    for p in patches:
        if cfg.input_size % p:
            fail("patch_sizes", f"patch sizes dividing the latent side input_size={cfg.input_size}")

    if cfg.refine_depth is not None:
        k, total = cfg.refine_depth, sum(depths)
        if len(patches) != 2:
            fail("refine_depth", f"only with two levels (patch_sizes={list(patches)}); set depths instead")
        if not 1 <= k < total:
            fail("refine_depth", f"an integer in [1, {total - 1}] (total depth {total})")
        depths = (total - k, k)
        cfg = dataclasses.replace(cfg, depths=depths, refine_depth=None)
    if len(depths) != len(patches):
        fail("depths", f"one block count per level: {len(patches)} value(s) to match patch_sizes={list(patches)}")
    if any(d < 1 for d in depths):
        fail("depths", "positive block counts for every level")
    _validate_time_schedule(cfg, fail)
    return cfg


def _validate_time_schedule(cfg: ModelConfig, fail) -> None:
    """PPFlow's schedule: shapes coarse first, ending at the first level's patch; boundaries decreasing in (0, 1)."""
    shapes = [parse_patch_shape(s) for s in cfg.time_patch_sizes]
    bounds = cfg.time_boundaries
    if cfg.level_embed_init not in LEVEL_EMBED_INITS:
        fail("level_embed_init", ", ".join(LEVEL_EMBED_INITS) + " (zero: the suite's; normal: N(0, 0.02), PPFlow's)")
    if not shapes:
        if bounds:
            fail("time_boundaries", "empty when time_patch_sizes is empty (no patch schedule)")
        if cfg.level_embed_init != "zero":
            fail("level_embed_init", "zero (the default) in a model without time_patch_sizes: only a patch "
                                     "schedule has a level embedding")
        return
    base = cfg.patch_sizes[0]
    if len(shapes) < 2:
        fail("time_patch_sizes", 'at least two stages, coarse first, e.g. ["4x4", "2x2"] (or [] for none)')
    if shapes[-1] != (base, base):
        fail("time_patch_sizes", f'a last (least noisy) stage equal to the first level\'s patch "{base}x{base}" '
                                 f"(patch_sizes={list(cfg.patch_sizes)})")
    for rows, cols in shapes:
        if rows % base or cols % base or rows < 1 or cols < 1:
            fail("time_patch_sizes", f"patch sides that are positive multiples of patch_sizes[0]={base}")
        if cfg.input_size % rows or cfg.input_size % cols:
            fail("time_patch_sizes", f"patch sides dividing the latent side input_size={cfg.input_size}")
        if cfg.num_levels > 1 and rows != cols:
            fail("time_patch_sizes", "square patches when the model has several levels (MPDiT coarse path)")
        if cfg.num_levels > 1 and rows % cfg.patch_sizes[1]:
            fail("time_patch_sizes", f"multiples of the next level's patch {cfg.patch_sizes[1]}")
    for (r0, c0), (r1, c1) in zip(shapes, shapes[1:]):
        if r0 < r1 or c0 < c1 or (r0, c0) == (r1, c1):
            fail("time_patch_sizes", "each stage strictly coarser than the next (coarse/noisy first), "
                                     'e.g. ["4x4", "2x4", "2x2"]')
    if len(bounds) != len(shapes) - 1:
        fail("time_boundaries", f"{len(shapes) - 1} value(s), one between each pair of the {len(shapes)} stages "
                                "(suite t: 0 data, 1 noise), e.g. [0.5] or [0.5, 0.25]")
    if any(not 0.0 < b < 1.0 for b in bounds):
        fail("time_boundaries", "values strictly between 0 and 1 (suite t: 0 data, 1 noise)")
    if any(a <= b for a, b in zip(bounds, bounds[1:])):
        fail("time_boundaries", "strictly decreasing values (coarse/noisy stage first), e.g. [0.5, 0.25]")


# ---- overrides and files ---------------------------------------------------------------------------
def parse_set(items: Iterable[str], source: str = "--set") -> dict[str, Any]:
    """Parse repeated ``key=value`` strings; values are read as YAML (``[4,2]``, ``4,2``, ``true``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(item, item, "key=value, e.g. --set refine_depth=4", source)
        raw = raw.strip()
        if raw.startswith("(") and raw.endswith(")"):
            raw = "[" + raw[1:-1] + "]"
        elif "," in raw and not raw.startswith("["):
            raw = "[" + raw + "]"
        try:
            out[key] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as err:
            raise ConfigError(key, raw, f"a YAML value ({err.__class__.__name__})", source) from None
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("path", str(path), "an existing YAML file", str(path))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError("(file)", str(path), f"valid YAML: {err}", str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("(top level)", type(data).__name__, "a mapping of keys to values", str(path))
    return data


__all__ = ["ConfigError", "INIT_KEYS", "LEVEL_EMBED_INITS", "MODEL_KEYS", "ModelConfig", "RECIPE_KEYS", "parse_set",
           "load_yaml", "parse_patch_shape", "patch_shape_name"]
