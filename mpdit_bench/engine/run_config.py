"""The run config: one YAML with sections model, model_overrides, data, train, sample.

Every key is checked, with defaults filled in, before any data or model is touched; errors name the
file, the key and the allowed values. ``--set section.key=value`` overrides any key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mpdit_bench import plugins
from mpdit_bench.config import ConfigError, ModelConfig, load_yaml, parse_set
from mpdit_bench.data.latents import NORMALIZATIONS, STORE_DTYPES
from mpdit_bench.models import get_preset, model_config
from mpdit_bench.engine.sampling import check_cfg_scale, check_options
from mpdit_bench.validation import Key, check_section, flatten_keys, is_bool, is_int, is_num, optional

SECTIONS = ("model", "model_overrides", "model_config", "data", "train", "sample", "plugins")
DATASETS = ("fashion-mnist", "latents")
INIT_SOURCES = ("mpdit", "sit", "ppflow")  # `imports.SOURCES`: the formats `mpdit-bench import` reads


TRAIN_KEYS: dict[str, Key] = {
    "global_batch": Key(256, lambda v: is_int(v) and v >= 1, "an integer >= 1 (per-rank batch x world size)"),
    "lr": Key(1e-4, lambda v: is_num(v) and v > 0, "a number > 0 (constant learning rate)"),
    "steps": Key(1000, lambda v: is_int(v) and v >= 0,
                 "an integer >= 1, or 0 (no training: the run samples and evaluates train.init_from as it is)"),
    "seed": Key(0, is_int, "an integer"),
    "ema_decay": Key(0.9999, lambda v: is_num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "ema_warmup": Key(False, is_bool,
                      "true or false (decay min(ema_decay, (1+step)/(10+step)): a short run's EMA leaves the init)"),
    "weight_decay": Key(0.01, lambda v: is_num(v) and v >= 0, "a number >= 0"),
    "betas": Key([0.9, 0.999],
                 lambda v: isinstance(v, list) and len(v) == 2 and all(is_num(b) and 0 <= b < 1 for b in v),
                 "two numbers in [0, 1), e.g. [0.9, 0.999]"),
    "grad_clip": Key(None, lambda v: v is None or (is_num(v) and v > 0), "null (no clipping) or a max grad norm > 0"),
    "label_drop": Key(0.1, lambda v: is_num(v) and 0 <= v <= 1, "a probability in [0, 1]"),
    "t_mean": Key(0.0, is_num, "a number (logit-normal mean)"),
    "t_std": Key(1.0, lambda v: is_num(v) and v > 0, "a number > 0 (logit-normal std)"),
    "device": Key("auto", lambda v: v in ("auto", "cpu", "cuda"), "auto, cpu, cuda"),
    "precision": Key("bf16", lambda v: v in ("bf16", "fp32"), "bf16 (autocast, GPU only), fp32"),
    "tf32": Key(True, is_bool, "true or false"),
    "compile": Key(False, is_bool, "true or false (torch.compile)"),
    "activation_checkpointing": Key(False, is_bool, "true or false"),
    "threads": Key(None, lambda v: v is None or (is_int(v) and v >= 1), "null or an integer >= 1 (torch CPU threads)"),
    "num_workers": Key(0, lambda v: is_int(v) and v >= 0, "an integer >= 0 (DataLoader workers)"),
    "log_every": Key(10, lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    "ckpt_every": Key(1000, lambda v: is_int(v) and v >= 1, "an integer >= 1 (steps between last.pt saves)"),
    "keep_every": Key(0, lambda v: is_int(v) and v >= 0, "an integer >= 0 (steps between kept step_*.pt; 0 = none)"),
    "keep_steps": Key(None, optional(lambda v: isinstance(v, list) and all(is_int(x) and x >= 1 for x in v)),
                      "null or a list of steps >= 1 at which step_*.pt is kept too (evaluation points)"),
    "val_every": Key(0, lambda v: is_int(v) and v >= 0, "an integer >= 0 (0 = no validation)"),
    "val_size": Key(512, lambda v: is_int(v) and v >= 1, "an integer >= 1 (held-out samples)"),
    "time_limit_s": Key(None, optional(lambda v: is_num(v) and v > 0), "null or seconds > 0 (stop and checkpoint)"),
    "resume": Key(True, is_bool, "true or false (continue from RUN/checkpoints/last.pt)"),
    "progress": Key(True, is_bool, "true or false (rich progress bar)"),
    "tensorboard": Key(False, is_bool, "true or false (metrics.csv rows also as TensorBoard events in RUN/tensorboard)"),
    # PPFlow (models with model_overrides.time_patch_sizes): t drawn per stage in these proportions
    "stage_proportions": Key(None, lambda v: v is None or (isinstance(v, list) and len(v) >= 1
                                                           and all(is_num(p) and p >= 0 for p in v) and sum(v) > 0),
                             "null (PPFlow's: each stage's share of t, e.g. 50/25/25) or numbers >= 0, one per stage, "
                             "coarse first, e.g. [0.5, 0.25, 0.25]"),
    "packing": Key(False, is_bool, "true or false (Patch n' Pack, one-level PPFlow models)"),
    "init_from": Key(None, optional(lambda v: isinstance(v, str)),
                     "null or a checkpoint whose model (+ EMA) weights start the run at step 0: the run's model, "
                     "or the run's model without its patch schedule (converted as PPFlow's start from SiT); with "
                     "init_source also 'random' (a random checkpoint in that format, CPU smokes)"),
    "init_source": Key(None, optional(lambda v: v in INIT_SOURCES),
                       "null (init_from is a suite checkpoint) or the format init_from is in, imported first: "
                       + ", ".join(INIT_SOURCES)),
}
DATA_KEYS: dict[str, Key] = {
    "name": Key("fashion-mnist", lambda v: v in DATASETS, ", ".join(DATASETS)),
    "path": Key(None, lambda v: v is None or isinstance(v, str), "a latent store directory (for name: latents)"),
    "limit": Key(None, optional(lambda v: is_int(v) and v >= 1), "null or an integer >= 1 (first N training items)"),
    "normalization": Key("store", lambda v: v in NORMALIZATIONS,
                         "store (per-channel statistics of the latent store, the suite's) or mpdit_authors (the MPDiT "
                         "authors' fixed constants)"),
    "hflip": Key(False, is_bool, "true or false (random left-right flips of the training latents, as SiT and PPFlow)"),
    "store_dtype": Key(None, lambda v: v is None or v in STORE_DTYPES,
                       "null (a latent store of any dtype) or the dtype the store must keep: float16 (the suite's "
                       "extract-latents default) or float32 (the MPDiT authors')"),
}


def validate_run_config(raw: dict[str, Any], source: str = "run config") -> dict[str, Any]:
    """Fill defaults and check every key; raises ConfigError naming the source, key and allowed values."""
    if not isinstance(raw, dict):
        raise ConfigError("(top level)", type(raw).__name__, "a mapping with sections " + ", ".join(SECTIONS), source)
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(key, raw[key], "one of the sections " + ", ".join(SECTIONS), source)
    plugin_list = plugins.check_list(raw.get("plugins"), "plugins", source)
    plugins.load(plugin_list, "plugins", source)  # before the model config names their components
    if not isinstance(raw.get("model"), str):
        raise ConfigError("model", raw.get("model"), "a preset name or shorthand (see `mpdit-bench models`)", source)
    overrides = raw.get("model_overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError("model_overrides", overrides, "a mapping of model config keys to values", source)
    if raw.get("model_config") is not None:  # resolved already: the preset only names the run's model
        mcfg = _resolved_model_config(raw["model"], raw["model_config"], overrides, source)
    else:
        try:
            mcfg = model_config(raw["model"], **overrides)  # validates the preset and every override
        except ConfigError as err:
            key = err.key if err.key == "model" else f"model_overrides.{err.key}"
            raise ConfigError(key, err.value, err.allowed, source) from None
    if not isinstance(raw.get("sample") or {}, dict):
        raise ConfigError("sample", raw["sample"], "a mapping of sampling options", source)
    cfg = {"model": raw["model"], "model_overrides": dict(overrides),
           **({"model_config": mcfg.to_dict()} if raw.get("model_config") is not None else {}),
           "data": check_section(raw.get("data"), DATA_KEYS, source, "data"),
           "train": check_section(raw.get("train"), TRAIN_KEYS, source, "train"),
           "sample": dict(raw.get("sample") or {}),
           **({"plugins": plugin_list} if plugin_list else {})}
    try:
        check_cfg_scale(check_options(cfg["sample"], source)["cfg_scale"], mcfg, source)
    except ConfigError as err:
        raise ConfigError(f"sample.{err.key}", err.value, err.allowed, source) from None
    _check_schedule_keys(cfg["train"], mcfg, source)
    _check_start_keys(cfg["train"], source)
    if cfg["data"]["name"] != "latents":
        latent_only = {"normalization": "store", "hflip": False, "store_dtype": None}
        for key, default in latent_only.items():
            if cfg["data"][key] != default:
                raise ConfigError(f"data.{key}", cfg["data"][key], f"the default ({default}): this key applies to "
                                  "data.name latents", source)
    if cfg["data"]["name"] == "latents" and not cfg["data"]["path"]:
        raise ConfigError("data.path", None, "a latent store directory (required for data.name: latents)", source)
    return cfg


def _resolved_model_config(preset: str, given: Any, overrides: dict[str, Any], source: str) -> ModelConfig:
    """The run's resolved model config (what the sweep wrote, or training recorded); every key of
    model_overrides must agree with it."""
    try:
        get_preset(preset)
    except ConfigError as err:
        raise ConfigError("model", err.value, err.allowed, source) from None
    if not isinstance(given, dict):
        raise ConfigError("model_config", given, "a mapping with every model config key (a resolved config)", source)
    mcfg = ModelConfig.from_dict(given, source=f"{source} model_config")
    for key, value in overrides.items():
        try:
            agrees = mcfg.replace(**{key: value}) == mcfg
        except ConfigError as err:
            raise ConfigError(f"model_overrides.{err.key}", err.value, err.allowed, source) from None
        if not agrees:
            raise ConfigError(f"model_overrides.{key}", value, f"{getattr(mcfg, key)!r}, the value of model_config.{key} "
                              "(the resolved config), or unset", source)
    return mcfg


def _check_start_keys(tc: dict[str, Any], source: str) -> None:
    """train.steps 0 needs train.init_from; init_source names its format, which "random" needs."""
    if tc["steps"] == 0 and not tc["init_from"]:
        raise ConfigError("train.init_from", None, "a checkpoint to sample: train.steps is 0 (no training)", source)
    if tc["init_source"] is not None and not tc["init_from"]:
        raise ConfigError("train.init_source", tc["init_source"], "null: it names the format of train.init_from, "
                          "which is not set", source)
    if tc["init_from"] == "random" and tc["init_source"] is None:
        raise ConfigError("train.init_from", "random", "a checkpoint path; 'random' needs train.init_source (the "
                          "format of the random checkpoint)", source)


def _check_schedule_keys(tc: dict[str, Any], mcfg: ModelConfig, source: str) -> None:
    """train.stage_proportions and train.packing need a model with a patch schedule (and packing one level)."""
    stages = len(mcfg.time_patch_sizes)
    props = tc["stage_proportions"]
    if props is not None and len(props) != stages:
        allowed = (f"{stages} numbers, one per stage of time_patch_sizes {list(mcfg.time_patch_sizes)}, coarse first"
                   if stages else "null: the model has no patch schedule (model_overrides.time_patch_sizes)")
        raise ConfigError("train.stage_proportions", props, allowed, source)
    if tc["packing"] and not (stages and mcfg.num_levels == 1):
        raise ConfigError("train.packing", True, "false, or a one-level model with a patch schedule "
                                                 "(time_patch_sizes; Patch n' Pack is one-level only)", source)


def load_run_config(path: str | Path, sets: list[str] | None = None) -> dict[str, Any]:
    """Read a run YAML and apply ``--set section.key=value`` overrides, then validate."""
    raw = load_yaml(path)
    for dotted, value in parse_set(sets or []).items():
        section, _, key = dotted.partition(".")
        if section not in SECTIONS:
            raise ConfigError(dotted, value, "section.key with section one of " + ", ".join(SECTIONS), "--set")
        if section == "model":
            if key:
                raise ConfigError(dotted, value, "model=NAME (model_overrides.KEY for model config keys)", "--set")
            raw["model"] = value
            continue
        if not key:
            raise ConfigError(dotted, value, f"{section}.KEY=VALUE", "--set")
        raw.setdefault(section, {})
        if raw[section] is None:
            raw[section] = {}
        raw[section][key] = value
    return validate_run_config(raw, source=str(path))


def resolve_model_config(run_cfg: dict[str, Any], info: dict[str, Any]) -> ModelConfig:
    """The run's ``model_config`` when it has one (a sweep's runs do), else the preset with overrides;
    channels, classes and latent side come from the data and must agree with either."""
    from_data = {"in_channels": info["channels"], "num_classes": info["num_classes"], "input_size": info["size"]}
    if run_cfg.get("model_config") is not None:
        mcfg = ModelConfig.from_dict(run_cfg["model_config"])
        for key, value in from_data.items():
            if getattr(mcfg, key) != value:
                raise ConfigError(f"model_config.{key}", getattr(mcfg, key), f"{value} (set by the data {info['name']})")
        return mcfg
    for key, value in from_data.items():
        given = run_cfg["model_overrides"].get(key)
        if given is not None and given != value:
            raise ConfigError(f"model_overrides.{key}", given, f"{value} (set by the data {info['name']}) or unset")
    return model_config(run_cfg["model"], **{**run_cfg["model_overrides"], **from_data})


__all__ = ["DATA_KEYS", "SECTIONS", "TRAIN_KEYS", "load_run_config", "resolve_model_config", "validate_run_config"]


# What a resumed run may change: how long it trains and what it logs. Anything else would make one run out of
# two recipes; a changed setting needs a new run directory or `train.resume: false`.
RESUMABLE_TRAIN_KEYS = ("steps", "time_limit_s", "log_every", "progress", "tensorboard", "ckpt_every",
                        "keep_every", "keep_steps", "resume")


class ResumeError(ConfigError):
    """A resume asked for settings other than those the checkpoint was trained with."""

    def __init__(self, checkpoint: str, changes: list[tuple[str, Any, Any]]):
        self.key, self.value, self.source, self.changes = changes[0][0], changes[0][2], checkpoint, changes
        self.allowed = "the checkpoint's values"
        lines = "\n".join(f"  {key}: {old!r} in the checkpoint, {new!r} now" for key, old, new in changes)
        ValueError.__init__(self, f"{checkpoint}: cannot resume with changed settings (only train."
                            f"{', train.'.join(RESUMABLE_TRAIN_KEYS)} may change):\n{lines}\n"
                            "Use a new --out, or --set train.resume=false to start this run over.")



def resume_changes(saved_run: dict[str, Any], saved_model: dict[str, Any] | None, run: dict[str, Any],
                   model: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, value in the checkpoint, value now) of every setting a resume may not change."""
    keep = {f"train.{k}" for k in RESUMABLE_TRAIN_KEYS}
    # the run config's model_config section is compared below as the resolved model config, key by key
    before = {k: v for k, v in flatten_keys({**saved_run, "model_config": None}).items() if k not in keep}
    after = {k: v for k, v in flatten_keys({**run, "model_config": None}).items() if k not in keep}
    if saved_model is not None:
        before.update(flatten_keys(saved_model, "model_config."))
        after.update(flatten_keys(model, "model_config."))
    for key, value in list(after.items()):  # a key newer than the checkpoint: it trained with the default
        name = key.removeprefix("train.")
        if key not in before and key.startswith("train.") and name in TRAIN_KEYS and value == TRAIN_KEYS[name].default:
            del after[key]
    missing = object()
    return [(k, before.get(k), after.get(k)) for k in sorted(before.keys() | after.keys())
            if before.get(k, missing) != after.get(k, missing)]
