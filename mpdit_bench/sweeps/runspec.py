"""One run of an experiment at one scale, fully resolved, and its stable id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from mpdit_bench.config import RUN_ID_GENERATION, identity_values

SCALES = ("paper", "cpu")
SWEEP_SAMPLE_KEYS = ("num", "device", "vae")  # the sample phase's own flags, not sampling defaults of the run
ID_FIELDS = ("scale", "model", "model_config", "resolution", "nproc", "data", "train", "sample", "eval")
# eval keys of the curve along training (sweeps/curve.py): which points and metrics are evaluated from kept
# checkpoints changes nothing the run trains, so a point can be added to a finished run
CURVE_KEYS = ("every", "curve_metrics", "curve_samples")
# eval keys only the report reads: how it compares runs changes nothing a run computes
REPORT_KEYS = ("single_seed",)
# data keys that only check the input (the store at data.path is what it is): they refuse, never change, a run
DATA_CHECK_KEYS = ("store_dtype",)


@dataclass
class RunSpec:
    """One run of an experiment at one scale, fully resolved."""

    experiment: str
    scale: str
    label: str
    model: str                      # preset name
    model_overrides: dict[str, Any]  # resolved config minus the preset (written to config.yaml)
    model_config: dict[str, Any]     # the config actually trained
    full_config: dict[str, Any]      # the unscaled config (paper's architecture), for published figures
    resolution: int
    nproc: int
    data: dict[str, Any]
    train: dict[str, Any]
    sample: dict[str, Any]
    eval: dict[str, Any]
    slurm: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, Any] = field(default_factory=dict)  # the values this run set (for tables)
    paper_table: str | None = None   # the paper table this run's experiment rebuilds (not in the id)
    run_id: str = ""
    group: str | None = None         # budget / reference group: runs matched to one reference run (not in the id)
    paper_row: str | None = None     # the table row it rebuilds, PAPER/TABLE/ROW (not in the id)
    seed: int = 0                    # training seed (= train.seed, so in the id; not in the label)
    smoke: bool = False              # a single-seed run of a replicated experiment: no verdict of its own
    plugins: list[str] = field(default_factory=list)  # modules of its own components (not in the id: the
                                                      # model config names the components)

    def run_config(self) -> dict[str, Any]:
        """The training contract's run config (docs/CONTRACTS.md). ``sample.num`` and ``sample.device`` are
        the sweep's own keys (how many samples the sample phase draws, and where), not sampling defaults."""
        sampling_defaults = {k: v for k, v in self.sample.items() if k not in SWEEP_SAMPLE_KEYS}
        return {"model": self.model, "model_overrides": self.model_overrides, "model_config": self.model_config,
                "data": self.data, "train": self.train, "sample": sampling_defaults,
                **({"plugins": list(self.plugins)} if self.plugins else {})}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        return cls(**d)


def run_id(spec: RunSpec) -> str:
    """Stable id: hash of everything that changes what the run computes, and the scale. The model config
    counts as the id policy of `config.KEY_GENERATIONS` says (run ids are of generation 1); the curve's
    eval keys (`CURVE_KEYS`), the report's (`REPORT_KEYS`) and the data checks (`DATA_CHECK_KEYS`) do not
    count."""
    keyed = {k: getattr(spec, k) for k in ID_FIELDS}
    keyed["data"] = {k: v for k, v in spec.data.items() if k not in DATA_CHECK_KEYS}
    keyed["eval"] = {k: v for k, v in spec.eval.items() if k not in CURVE_KEYS + REPORT_KEYS}
    keyed["model_config"] = identity_values(spec.model_config, RUN_ID_GENERATION)
    blob = json.dumps(keyed, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def primary_metric(spec: RunSpec) -> str:
    """The metric tables and plots lead with."""
    return spec.eval.get("primary") or spec.eval["metrics"][0]
