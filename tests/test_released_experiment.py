"""experiments/released.yaml: the released SiT-XL/2, PPF-XL-2 and PPF-XL-3 sampled and evaluated without
training (train.steps 0 from train.init_from in the source's format), and its CPU smoke on random checkpoints
written in each source's format at run time."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from mpdit_bench import checkpoint
from mpdit_bench.config import ConfigError
from mpdit_bench.engine.run_config import validate_run_config
from mpdit_bench.sweeps.expand import expand
from mpdit_bench.sweeps.experiment import load_experiment
from mpdit_bench.sweeps.pipeline import Pipeline
from _data import needs_fashion_mnist

RELEASED = Path(__file__).resolve().parents[1] / "experiments" / "released.yaml"


def runs(scale: str):
    return {spec.label: spec for spec in expand(load_experiment(RELEASED), scale)}


def test_paper_runs_import_the_released_files_with_their_sources_sampling():
    specs = runs("paper")  # resolving reads none of the released files
    assert set(specs) == {"SiT-XL/2-G", "PPF-XL-2", "PPF-XL-3"}
    sit, ppf2, ppf3 = specs["SiT-XL/2-G"], specs["PPF-XL-2"], specs["PPF-XL-3"]
    assert [s.paper_row for s in (sit, ppf2, ppf3)] == ["ppflow/main/sit-xl-2", "ppflow/main/ppf-xl-2",
                                                       "ppflow/main/ppf-xl-3"]
    for spec, source in ((sit, "sit"), (ppf2, "ppflow"), (ppf3, "ppflow")):
        assert spec.train["steps"] == 0 and spec.train["init_source"] == source
        assert spec.model_config["time_embed_scale"] == 1
        assert spec.sample["sampler"] == ("dopri5" if source == "sit" else "heun2") and spec.sample["cfg_channels"] == 3
        assert spec.eval["ref"].endswith("VIRTUAL_imagenet256_labeled.npz")
    assert sit.sample["cfg_scale"] == 1.5
    assert len(ppf2.sample["cfg_scale"]) == 2 and len(ppf3.sample["cfg_scale"]) == 3
    assert len({s.train["init_from"] for s in (sit, ppf2, ppf3)}) == 3


def test_a_run_without_training_needs_a_checkpoint_and_a_source_needs_a_file():
    base = {"model": "SiT-S/2", "data": {"name": "fashion-mnist"}}
    with pytest.raises(ConfigError, match="train.init_from"):
        validate_run_config({**base, "train": {"steps": 0}})
    with pytest.raises(ConfigError, match="train.init_source"):
        validate_run_config({**base, "train": {"steps": 10, "init_source": "sit"}})
    with pytest.raises(ConfigError, match="random"):
        validate_run_config({**base, "train": {"steps": 0, "init_from": "random"}})
    with pytest.raises(ConfigError, match="init_source"):
        validate_run_config({**base, "train": {"steps": 0, "init_from": "x.pt", "init_source": "dit"}})


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    spec = runs("cpu")["SiT-XL/2-G"]
    spec = copy.deepcopy(spec)
    spec.model_config["depths"] = [3]
    spec.model_overrides["depths"] = [3]
    other = runs("cpu")["SiT-XL/2-G"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    from mpdit_bench.config import ModelConfig
    from mpdit_bench.imports.export import write_source_checkpoint
    from mpdit_bench.imports.start import start_without_training

    source = write_source_checkpoint(ModelConfig.from_dict(other.model_config), "sit", tmp_path / "sit.pt")
    run_cfg = validate_run_config({**spec.run_config(), "train": {**spec.train, "init_from": str(source)}})
    with pytest.raises(ConfigError, match="depths"):
        start_without_training(run_cfg, ModelConfig.from_dict(spec.model_config), run_dir)
    assert not (run_dir / "checkpoints" / "last.pt").exists()


@needs_fashion_mnist
def test_cpu_smoke_imports_samples_and_evaluates_each_source(tmp_path):
    """The pipeline's phases on each run, with fewer samples and (PPFlow's heun2) grid points than the file's."""
    pipeline = Pipeline()
    for label, spec in runs("cpu").items():
        spec.sample = {**spec.sample, "num": 4, "batch_size": 4}  # > 3: precision/recall use k = 3
        if label != "SiT-XL/2-G":
            assert spec.sample["sampler"] == "heun2" and spec.sample["grid"] == "points"
            spec.sample.update(steps=4)
        run_dir = tmp_path / spec.run_id
        run_dir.mkdir()
        summary = pipeline.train(spec, run_dir)
        assert summary["final_step"] == 0 and summary["trained"] is False
        ckpt = checkpoint.load(run_dir / "checkpoints" / "last.pt")
        assert ckpt["imported_from"]["source"] == spec.train["init_source"]
        assert ckpt["model_config"] == spec.model_config
        assert ckpt["run_config"]["sample"]["sampler"] == spec.sample["sampler"]
        assert ckpt["run_config"]["sample"]["cfg_channels"] == 3
        assert ckpt["data_info"]["name"] == "fashion-mnist"
        pipeline.sample(spec, run_dir)
        with np.load(run_dir / "samples.npz") as f:
            assert f["arr_0"].shape == (4, 32, 32, 3) and f["arr_0"].dtype == np.uint8
        if label == "SiT-XL/2-G":
            result = pipeline.evaluate(spec, run_dir)
            assert result["fd_fmnist_proxy"] is not None and result["fd_fmnist_proxy"] >= 0
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["steps"] == 0
