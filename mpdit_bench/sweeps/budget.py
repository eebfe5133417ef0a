"""Equal training compute (``budget: {reference: LABEL}``): runs get the steps of the reference's FLOPs.

In each group, the run labelled as the group's reference keeps its train.steps (the budget); every other
run of the group gets the steps giving it the same training FLOPs at the same global batch. Counting the
FLOPs builds each model on the meta device (shapes only).
"""

from __future__ import annotations

import json
from typing import Any

from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench.sweeps.references import References, check_groups
from mpdit_bench.sweeps.runspec import SCALES, RunSpec, run_id
from mpdit_bench.sweeps.settings import checked
from mpdit_bench.validation import require as _need


def parse_budget(budget: Any, source: str) -> References:
    """``budget.reference`` as {group: label}; one label = the reference of every run (group None)."""
    _need(isinstance(budget, dict) and set(budget) == {"reference"}, "budget", budget,
          "{reference: LABEL} or {reference: {GROUP: LABEL, ...}}", source)
    ref = budget["reference"]
    if isinstance(ref, str):
        return {None: ref}
    _need(isinstance(ref, dict) and ref and all(isinstance(k, str) and isinstance(v, str) for k, v in ref.items()),
          "budget.reference", ref, "a run label, or a mapping of group names to run labels", source)
    return dict(ref)


def sets_steps(point: dict[str, Any], scale: str) -> bool:
    """Whether a grid point / variant sets train.steps or train.epochs itself (at this scale)."""
    for key, value in point.items():
        root, _, rest = key.partition(".")
        if root in SCALES:
            if root != scale:
                continue
            key = rest
        if key in ("train.steps", "train.epochs") or (key == "train" and isinstance(value, dict)
                                                       and ({"steps", "epochs"} & set(value))):
            return True
    return False


def equal_compute_steps(reference_steps: int, reference_flops: float, run_flops: float) -> int:
    """Steps giving a run the reference's training compute at the same batch size."""
    if reference_steps < 1 or reference_flops <= 0 or run_flops <= 0:
        raise ConfigError("budget", (reference_steps, reference_flops, run_flops), "positive steps and FLOPs")
    return max(1, round(reference_steps * reference_flops / run_flops))


def training_flops(spec: RunSpec, source: str) -> float:
    """Training FLOPs per sample of the model this run trains (at its scale), for its PPFlow stage mix."""
    import torch

    from mpdit_bench.counting import training_flops_per_sample
    from mpdit_bench.models import build_model

    cfg = ModelConfig.from_dict(spec.model_config, source)
    with torch.device("meta"):  # shapes only: no memory, no init
        model = build_model(cfg)
    return checked(lambda: training_flops_per_sample(model, spec.train.get("stage_proportions")), "train", source)


def apply_budget(specs: list[RunSpec], references: References, own_steps: list[bool], source: str) -> None:
    """Give every run but its group's reference the steps of equal training compute:
    ``equal_compute_steps(ref_steps, F(ref), F(run))``, F = training FLOPs per sample of the resolved
    (scaled) model with the run's train.stage_proportions. ``own_steps[i]``: run i sets its steps itself
    (refused: the budget sets them). Run ids are recomputed."""
    check_groups(specs, references, "no group: budget.reference is one label; give it as {GROUP: LABEL, ...} "
                 "to use groups" if None in references
                 else "a group of budget.reference: " + ", ".join(map(str, references)), source)
    flops: dict[str, float] = {}

    def f(spec: RunSpec) -> float:
        key = json.dumps([spec.model_config, spec.train.get("stage_proportions")], sort_keys=True)
        if key not in flops:
            flops[key] = training_flops(spec, source)
        return flops[key]

    for group, label in references.items():
        members = [(s, own) for s, own in zip(specs, own_steps) if s.group == group]
        if not members:
            continue  # the group has no run at this scale
        where = "budget.reference" + ("" if group is None else f".{group}")
        refs = {s.run_id: s for s, _ in members if s.label == label}
        _need(len(refs) == 1, where, label, "the label of exactly one run" + ("" if group is None else
              f" of group {group}") + f" at scale {members[0][0].scale}: "
              + ", ".join(dict.fromkeys(s.label for s, _ in members)), source)
        ref = next(iter(refs.values()))
        for spec, own in members:
            if spec.label == label:
                continue
            _need(not own, f"{spec.label}: train.steps", spec.train.get("steps"), "not set: the budget gives "
                  f"train.steps to every run but the reference {label!r}", source)
            batch = ref.train["global_batch"]
            _need(spec.train["global_batch"] == batch, f"{spec.label}: train.global_batch",
                  spec.train["global_batch"], f"{batch}, the reference's: equal compute compares steps at one "
                  "batch size", source)
            spec.train = {**spec.train, "steps": equal_compute_steps(ref.train["steps"], f(ref), f(spec))}
            spec.run_id = run_id(spec)
