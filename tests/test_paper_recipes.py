"""Each paper's recipe at paper scale (docs/CONVENTIONS.md): every run of an MPDiT table follows the MPDiT
authors' conventions, every run of a PPFlow table PPFlow's; PPFlow's XL rows start where its authors did
(SiT-XL/2's released file, converted at run start), trained for the extra compute the paper states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mpdit_bench import checkpoint
from mpdit_bench.config import ModelConfig
from mpdit_bench.counting import training_flops_per_sample
from mpdit_bench.models import build_model, model_config
from mpdit_bench.sweeps.expand import expand
from mpdit_bench.sweeps.experiment import load_experiment
from mpdit_bench.sweeps.pipeline import Pipeline
from _data import needs_fashion_mnist

MAIN = Path(__file__).resolve().parents[1] / "experiments" / "ppflow_main.yaml"
SIT_XL_STEPS = 7_000_000  # SiT-XL/2's training, batch 256
EXTRA = {"ppflow/main/ppf-xl-2": 0.089, "ppflow/main/ppf-xl-3": 0.071}  # PPFlow's stated extra training FLOPs


def xl_runs(scale: str):
    return [spec for spec in expand(load_experiment(MAIN), scale) if spec.paper_row in EXTRA]


def test_xl_rows_train_for_the_extra_compute_the_paper_states():
    with torch.device("meta"):
        sit = training_flops_per_sample(build_model(model_config("SiT-XL/2", time_embed_scale=1)))
    specs = xl_runs("paper")
    assert len(specs) == 2
    for spec in specs:
        with torch.device("meta"):
            model = build_model(ModelConfig.from_dict(spec.model_config))
        flops = training_flops_per_sample(model, spec.train["stage_proportions"])
        share = spec.train["steps"] * flops / (SIT_XL_STEPS * sit)  # same batch 256 on both sides
        assert spec.train["global_batch"] == 256
        assert share == pytest.approx(EXTRA[spec.paper_row], rel=0.01), spec.label


def test_xl_rows_start_from_sits_released_file_with_ppflows_recipe():
    for spec in xl_runs("paper"):
        levels = len(spec.model_config["time_patch_sizes"])
        assert spec.train["init_source"] == "sit" and spec.train["init_from"].endswith("SiT-XL-2-256x256.pt")
        assert spec.model_config["level_embed_init"] == "normal" and spec.model_config["time_embed_scale"] == 1
        assert spec.train["lr"] == 1e-4 and spec.train["weight_decay"] == 0 and spec.data["hflip"] is True
        assert spec.sample["cfg_channels"] == 3
        assert len(spec.sample["cfg_scale"]) == levels and spec.sample["cfg_scale"][0] == 1.0


MPDIT_TABLES = ["ablation_components", "ablation_k", "class_tokens", "imagenet512", "imagenet512_variants",
                "main_256", "time_embedder", "upsample"]


def test_every_experiment_of_a_published_table_is_checked_here():
    import yaml

    tables = {p.stem: yaml.safe_load(p.read_text()).get("paper_table") for p in MAIN.parent.glob("*.yaml")}
    assert sorted(k for k, v in tables.items() if v and v.startswith("mpdit/")) == MPDIT_TABLES


@pytest.mark.parametrize("name", MPDIT_TABLES)
def test_every_paper_scale_run_of_an_mpdit_table_follows_the_authors_recipe(name):
    specs = expand(load_experiment(MAIN.parent / f"{name}.yaml"), "paper")
    assert specs
    for spec in specs:
        cfg = spec.model_config
        assert cfg["time_embed_scale"] == 1, spec.label  # raw t
        if cfg["time_embedder"] == "fno":
            assert cfg["fno_init"] == "authors", spec.label  # N(0, 1) spectral weights
        assert spec.data["normalization"] == "mpdit_authors" and spec.data["store_dtype"] == "float32"
        assert spec.data.get("hflip", False) is False and spec.train.get("ema_warmup", False) is False
        if spec.sample["sampler"] in ("euler", "sde_sbdm"):
            assert spec.sample["grid"] == "points" and spec.sample["steps"] == 250, spec.label
        assert spec.sample.get("cfg_channels") is None, spec.label  # guidance on every channel


@pytest.mark.parametrize("name", ["ppflow_main", "ppflow_adaptation", "ppflow_design"])
def test_every_paper_scale_run_of_a_ppflow_table_follows_ppflows_recipe(name):
    specs = expand(load_experiment(MAIN.parent / f"{name}.yaml"), "paper")
    assert specs
    for spec in specs:
        cfg = spec.model_config
        assert cfg["time_embed_scale"] == 1, spec.label
        assert cfg["level_embed_init"] == ("normal" if cfg["time_patch_sizes"] else "zero"), spec.label
        assert spec.train["lr"] == 1e-4 and spec.train["weight_decay"] == 0 and spec.train["ema_decay"] == 0.9999
        assert spec.data["hflip"] is True and spec.sample["cfg_channels"] == 3, spec.label
        sampling = (spec.sample["sampler"], spec.sample["grid"], spec.sample["steps"])
        assert sampling == ("heun2", "points", 250), spec.label  # sample_ddp.py's ODE default


@needs_fashion_mnist
def test_cpu_smoke_converts_a_random_sit_file_trains_and_samples(tmp_path):
    spec = next(s for s in xl_runs("cpu") if s.paper_row == "ppflow/main/ppf-xl-3")
    spec.train = {**spec.train, "steps": 2}
    spec.sample = {**spec.sample, "num": 4, "batch_size": 4, "steps": 3}
    run_dir = tmp_path / spec.run_id
    run_dir.mkdir()
    pipeline = Pipeline()
    summary = pipeline.train(spec, run_dir)
    assert summary["final_step"] == 2 and np.isfinite(summary["final_loss"])
    assert (run_dir / "random_sit.pt").is_file()  # the start, in SiT's own format
    state = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert state["model"]["level_embed.weight"].shape[0] == 3
    pipeline.sample(spec, run_dir)
    with np.load(run_dir / "samples.npz") as f:
        assert f["arr_0"].shape == (4, 32, 32, 3)
