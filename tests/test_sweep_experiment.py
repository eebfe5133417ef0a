"""Experiment files: expansion into runs, stable ids, the CPU scale rule, validation errors."""

from pathlib import Path

import pytest
import yaml

from mpdit_bench.config import ConfigError
from mpdit_bench.models import model_config
from mpdit_bench.sweeps.cpu_scale import cpu_scaled
from mpdit_bench.sweeps.experiment import load_experiment

EXPERIMENTS = Path(__file__).parent.parent / "experiments"

BASE = {
    "name": "tiny",
    "base": {"model": "MPDiT-B"},
    "scales": {
        "cpu": {"data": {"name": "fashion-mnist"}, "train": {"global_batch": 8, "steps": 4, "lr": 1e-3},
                "sample": {"num": 8, "steps": 2}, "eval": {"ref": "fashion-mnist:test", "metrics": ["fd_fmnist_proxy"]}},
        "paper": {"resolution": 256, "nproc": 8, "data": {"name": "latents", "path": "x"},
                  "train": {"global_batch": 1024, "epochs": 80, "dataset_size": 1281167},
                  "sample": {"num": 50000}, "eval": {"ref": "ref.npz", "metrics": ["fid", "sfid"]}},
    },
    "axes": [
        {"grid": {"model": ["MPDiT-B", "MPDiT-L"], "model_overrides.refine_depth": [4, 6, 8]}},
        {"variants": [{"model": "DiT-B/2"}, {"model": "MPDiT-B", "model_overrides": {"refine_depth": 6}},
                      {"model": "MPDiT-B", "label": "fast", "cpu": {"train": {"steps": 2}}}]},
    ],
}


def write(tmp_path, data, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_expansion_counts_and_duplicates(tmp_path):
    runs = load_experiment(write(tmp_path, BASE)).runs("cpu")
    # 2 x 3 grid + DiT-B/2 + a duplicate of (MPDiT-B, k=6) dropped + the cpu-only "fast" variant
    assert len(runs) == 8
    assert [r.label for r in runs[:3]] == ["MPDiT-B k=4", "MPDiT-B k=6", "MPDiT-B k=8"]
    fast = runs[-1]
    assert fast.label == "fast" and fast.train["steps"] == 2 and runs[0].train["steps"] == 4
    assert len({r.run_id for r in runs}) == len(runs)


def test_the_file_is_read_once_into_typed_settings(tmp_path):
    from mpdit_bench.sweeps.cpu_scale import CPU_RESOLUTION
    from mpdit_bench.sweeps.settings import ScaleSettings

    path = write(tmp_path, {**BASE, "seeds": 2, "reference": "fast"})
    exp = load_experiment(path)
    assert exp.model == "MPDiT-B" and exp.seeds == 2 and exp.reference == {None: "fast"} and exp.budget is None
    assert list(exp.scales) == ["cpu", "paper"] and all(isinstance(s, ScaleSettings) for s in exp.scales.values())
    assert exp.scales["paper"].nproc == 8 and exp.scales["paper"].train["epochs"] == 80
    assert exp.scales["cpu"].resolution == 256 and exp.workers("cpu") == 1 and exp.workers("paper") == 1
    assert len(exp.points) == 2 * 3 + 3
    assert exp.points[-1] == {"model": "MPDiT-B", "label": "fast", "cpu.train.steps": 2}
    path.unlink()  # runs resolve from the parsed experiment, never from the file again
    runs = exp.runs("cpu")
    assert len(runs) == 2 * 8 and all(r.resolution == CPU_RESOLUTION for r in runs)


def test_ids_stable_and_sensitive(tmp_path):
    first = [r.run_id for r in load_experiment(write(tmp_path, BASE, "a.yaml")).runs("cpu")]
    again = [r.run_id for r in load_experiment(write(tmp_path, BASE, "b.yaml")).runs("cpu")]
    assert first == again  # same resolved configs, different file: same ids
    changed = yaml.safe_load(yaml.safe_dump(BASE))
    changed["scales"]["cpu"]["train"]["lr"] = 2e-3
    other = [r.run_id for r in load_experiment(write(tmp_path, changed, "c.yaml")).runs("cpu")]
    assert not set(first) & set(other)
    paper = [r.run_id for r in load_experiment(write(tmp_path, BASE, "d.yaml")).runs("paper")]
    assert not set(first) & set(paper)


def test_cpu_rule_and_paper_scale(tmp_path):
    exp = load_experiment(write(tmp_path, BASE))
    cpu = exp.runs("cpu")[0]  # MPDiT-B k=4: depths (8, 4) -> (4, 2)
    assert cpu.model_config["depths"] == [4, 2] and cpu.model_config["hidden_size"] == 96
    assert cpu.model_config["num_heads"] == 3 and cpu.model_config["in_channels"] == 1
    assert cpu.model_config["num_classes"] == 10 and cpu.model_config["input_size"] == 32
    assert cpu.full_config["hidden_size"] == 768 and cpu.full_config["depths"] == [8, 4]
    xl = cpu_scaled(model_config("MPDiT-XL", 256))
    assert (xl.hidden_size, xl.num_heads, xl.depths) == (128, 4, (11, 3))
    paper = exp.runs("paper")[0]
    assert paper.nproc == 8 and paper.model_config["hidden_size"] == 768
    assert paper.train["steps"] == -(-80 * 1281167 // 1024) and "epochs" not in paper.train
    cfg = paper.run_config()
    assert cfg["model"] == "MPDiT-B" and cfg["model_overrides"] == {"depths": [8, 4]}


@pytest.mark.parametrize("mutate, key, allowed", [
    (lambda d: d.update(extra=1), "extra", "one of the top-level keys"),
    (lambda d: d["scales"]["cpu"]["eval"].update(metrics=["fid", "fidd"]), "eval.metrics", "fd_fmnist_proxy"),
    (lambda d: d["axes"].append({"variants": [{"model_overrides": {"refine_depth": 20}}]}),
     "model_overrides.refine_depth", "an integer in [1, 11]"),
    (lambda d: d["axes"].append({"variants": [{"model": "MPDiT-Q"}]}), "model", "MPDiT-B"),
    (lambda d: d["axes"].append({"variants": [{"optimizer": "sgd"}]}), "optimizer", "keys under label, model"),
    (lambda d: d["scales"]["cpu"]["sample"].update(sampler="ddim"), "sample.sampler", "euler, heun, heun2, sde"),
    (lambda d: d["scales"]["paper"]["train"].pop("dataset_size"), "train.dataset_size", "a positive integer"),
    (lambda d: d["scales"].update(gpu={}), "scales", "paper and cpu"),
    (lambda d: d["scales"]["cpu"].update(workers=0), "scales.cpu.workers", "a number of local worker processes"),
])
def test_errors_name_file_key_allowed(tmp_path, mutate, key, allowed):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    message = str(err.value)
    assert str(path) in message and repr(key) in message and allowed in message


def test_unknown_scale_on_command_line(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    del data["scales"]["paper"]
    with pytest.raises(ConfigError, match="'--scale'.*cpu"):
        load_experiment(write(tmp_path, data)).runs("paper")


def test_shipped_experiments_load():
    names = {p.stem for p in EXPERIMENTS.glob("*.yaml")  # run configs and the search space are not experiments
             if not p.name.startswith(("train_", "search_")) and p.name != "ppflow_fmnist_cpu.yaml"}
    assert {"ablation_k", "ablation_components", "upsample", "time_embedder", "class_tokens", "hierarchy",
            "main_256", "imagenet512"} <= names
    k = load_experiment(EXPERIMENTS / "ablation_k.yaml")
    labels = [r.label for r in k.runs("paper")]
    assert len(labels) == 8 and "MPDiT-XL k=8" in labels
    assert all(r.nproc == 8 for r in k.runs("paper")) and all(r.nproc == 1 for r in k.runs("cpu"))
    chain = [r.model for r in load_experiment(EXPERIMENTS / "ablation_components.yaml").runs("cpu")]
    assert chain == ["DiT-B/2", "DiT-B/2+shared", "DiT-B/2+shared+tokens", "DiT-B/2+shared+tokens+fno", "MPDiT-B"]
    for name in names - {"ablation_k", "ablation_components"}:
        exp = load_experiment(EXPERIMENTS / f"{name}.yaml")
        assert exp.runs("cpu") and exp.runs("paper")


def with_rows(paper_table, variants):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["paper_table"] = paper_table
    data["axes"] = [{"variants": variants}]
    return data


def test_runs_name_their_paper_row_outside_the_run_id(tmp_path):
    runs = load_experiment(write(tmp_path, with_rows("mpdit/4", [
        {"model_overrides": {"refine_depth": 4}, "paper_row": "mpdit/4/mpdit-b-k4"},
        {"model_overrides": {"refine_depth": 4}}]))).runs("paper")
    assert len(runs) == 1 and runs[0].paper_row == "mpdit/4/mpdit-b-k4"  # same run: the row is not in the id
    assert runs[0].label == "MPDiT-B k=4"


@pytest.mark.parametrize("table,variant,message", [
    ("mpdit/4", {"paper_row": "mpdit/4/mpdit-b-k5"}, r"'paper_row' = 'mpdit/4/mpdit-b-k5'.*mpdit-b-k4"),
    ("mpdit/4", {"paper_row": "mpdit/3/mpdit-b"}, r"'paper_row'.*paper_table mpdit/4: mpdit/4/dit-b-2-dagger"),
    ("mpdit/4", {"paper_row": "mpdit/4/mpdit-b-k8"}, r"'paper_row'.*depths \(run \[6, 6\], row \[4, 8\]\)"),
    ("mpdit/8", {"paper_row": "mpdit/8/biggan"}, r"'paper_row'.*a row the suite builds.*BigGAN"),
    ("Table 4", {}, r"'paper_table' = 'Table 4'.*mpdit/1"),
])
def test_paper_rows_and_tables_are_checked_when_loading(tmp_path, table, variant, message):
    with pytest.raises(ConfigError, match=r"exp.yaml: key " + message):
        load_experiment(write(tmp_path, with_rows(table, [variant])))


def test_every_shipped_paper_table_experiment_names_a_row_for_every_run():
    for path in EXPERIMENTS.glob("*.yaml"):
        exp = load_experiment(path) if "paper_table" in yaml.safe_load(path.read_text()) else None
        if exp is None:
            continue
        for scale in ("paper", "cpu"):
            rows = [r.paper_row for r in exp.runs(scale)]
            assert rows and all(r and r.startswith(exp.paper_table + "/") for r in rows), path


def test_run_ids_ignore_the_upsample_refine_keys_at_their_default(tmp_path):
    def run(overrides):
        data = yaml.safe_load(yaml.safe_dump(BASE))
        data["axes"] = [{"variants": [{"model_overrides": overrides}]}]
        return load_experiment(write(tmp_path, data)).runs("cpu")[0]

    plain = run({"refine_depth": 6})
    assert run({"upsample_refine": "linear", "upsample_refine_ratio": 4}).run_id == plain.run_id
    assert run({"upsample_refine": "mlp"}).run_id != plain.run_id
    assert run({"upsample_refine": "mlp", "upsample_refine_ratio": 2}).run_id != run({"upsample_refine": "mlp"}).run_id
