import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mpdit_bench.bench.compare import compare

ROOT = Path(__file__).resolve().parents[1]
TINY = {"hidden_size": 32, "num_heads": 2, "input_size": 16}
torch.set_num_threads(1)


@pytest.mark.parametrize("mode", ["train", "sample"])
def test_bench_smoke_writes_json(tmp_path, mode):
    result = compare(mode, "MPDiT-B", "DiT-B/2+shared+tokens+fno", 2, TINY, tmp_path, warmup=1, reps=1, iters=1,
                     sample_steps=10, device="cpu")
    saved = json.loads(Path(result["path"]).read_text())
    a, b = saved["a"], saved["b"]
    assert a["model"] == "MPDiT-B" and b["config"]["depths"] == [12]
    assert a["images_per_s"] > 0 and len(a["seconds_per_iter_all"]) == 1
    assert saved["throughput_ratio_a_over_b"] == pytest.approx(a["images_per_s"] / b["images_per_s"])
    assert "RSS" in a["memory_method"] and a["peak_memory_bytes"] >= 0
    assert a["gflops_per_image"] < b["gflops_per_image"]  # MPDiT runs most blocks on coarse tokens


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "mpdit_bench", *args], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})


def test_bench_cli_rejects_unknown_mode():
    done = _cli("bench", "infer", "--model", "b", "--vs", "l")
    assert done.returncode == 2 and "No such command 'infer'" in done.stderr


def test_bench_cli_train_needs_both_models():
    done = _cli("bench", "train", "--model", "b")
    assert done.returncode == 2 and "Missing option '--vs'" in done.stderr


def test_bench_train_sample_and_gpu_are_separate_commands_with_their_own_options():
    from typer.testing import CliRunner

    from mpdit_bench.cli import app

    runner = CliRunner()
    listing = runner.invoke(app, ["bench", "--help"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0
    for name in ("train", "sample", "gpu"):
        assert f" {name} " in listing.stdout
    helps = {}
    for name in ("train", "sample", "gpu"):
        result = runner.invoke(app, ["bench", name, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        helps[name] = result.stdout
    for name in ("train", "sample"):  # the A vs B comparison's options
        for flag in ("--model", "--vs", "--batch", "--set", "--warmup", "--reps", "--iters", "--threads"):
            assert flag in helps[name]
        assert "--budget-s" not in helps[name] and "--setting" not in helps[name]
    assert "--sample-steps" in helps["sample"] and "--sample-steps" not in helps["train"]
    for flag in ("--small", "--budget-s", "--no-compile", "--inception-weights", "--setting", "--model", "--vs"):
        assert flag in helps["gpu"]
    assert "--batch " not in helps["gpu"] and "--reps" not in helps["gpu"]
    # an option of one command is refused by another
    refused = runner.invoke(app, ["bench", "train", "--model", "b", "--vs", "l", "--small"])
    assert refused.exit_code == 2 and "--small" in refused.output


def _stage_counting_build(monkeypatch, seen):
    """compare's build_model, with a forward hook that records each network evaluation's stage."""
    import mpdit_bench.bench.compare as compare_module
    from mpdit_bench.models import build_model

    def build_and_count(cfg):
        model = build_model(cfg)
        counts = seen.setdefault(cfg.config_hash(), [])

        def record(module, args, kwargs):
            t = args[1] if len(args) > 1 else kwargs["t"]
            stage = int(module.schedule.stage_of(t[:1].cpu())[0]) if module.schedule is not None else 0
            counts.append((stage, len(t)))
        model.register_forward_pre_hook(record, with_kwargs=True)
        return model
    monkeypatch.setattr(compare_module, "build_model", build_and_count)


def test_bench_sample_times_whole_trajectories_with_their_stage_flops(tmp_path, monkeypatch):
    """PPFlow's speed-up over its isotropic twin follows its trajectory FLOPs: every stage of the schedule
    is run as often as the sampler's steps put it there, and the GFLOPs reported are that average."""
    from mpdit_bench.counting import trajectory_flops
    from mpdit_bench.engine.sampling import time_grid
    from mpdit_bench.models import build_model, model_config

    seen: dict[str, list] = {}
    _stage_counting_build(monkeypatch, seen)
    steps, batch, reps = 10, 2, 2
    result = compare("sample", "PPF-B-2", "SiT-B/2", batch, TINY, tmp_path, warmup=0, reps=reps, iters=1,
                     sample_steps=steps, device="cpu")
    ppf_cfg, sit_cfg = model_config("PPF-B-2", **TINY), model_config("SiT-B/2", **TINY)
    ppf, sit = build_model(ppf_cfg), build_model(sit_cfg)
    # the stages the timed trajectories ran: Euler evaluates at t = 1, 0.9, ..., 0.1; t >= 0.5 is the coarse stage
    ppf_stages = [stage for stage, _ in seen[ppf_cfg.config_hash()]]
    expected = ppf.schedule.stage_of(torch.tensor(time_grid(steps)[:-1])).tolist() * reps
    assert ppf_stages == expected and set(ppf_stages) == {0, 1}
    assert all(rows == 2 * batch for _, rows in seen[ppf_cfg.config_hash()])  # guided: conditional + null batch
    assert len(seen[sit_cfg.config_hash()]) == steps * reps

    a, b = result["a"], result["b"]
    fractions = [ppf_stages.count(s) / len(ppf_stages) for s in range(ppf.schedule.num_stages)]
    assert a["gflops_per_evaluation"] == pytest.approx(trajectory_flops(ppf, fractions) / 1e9, rel=1e-9)
    assert b["gflops_per_evaluation"] == pytest.approx(sit.flops() / 1e9, rel=1e-9)
    for r in (a, b):
        assert r["gflops_per_image"] == pytest.approx(r["gflops_per_evaluation"] * steps * 2, rel=1e-9)
        assert r["images_per_s"] == pytest.approx(batch / r["seconds_per_iter_median"], rel=1e-9)
    # the trajectory ratio lies well away from the coarse stage's alone (what one evaluation at t = 0.5 gave)
    coarse_only = ppf.flops(0) / sit.flops()
    ratio = result["gflops_ratio_a_over_b"]
    assert ratio == pytest.approx(trajectory_flops(ppf, fractions) / sit.flops(), rel=1e-9)
    assert ratio > 2 * coarse_only and ratio < 1.0
    saved = json.loads(Path(result["path"]).read_text())
    assert saved["a"]["stage_evaluation_fractions"] == pytest.approx(fractions, rel=1e-9)


def test_the_sample_comparison_fits_80_columns_with_every_figure_whole(monkeypatch):
    from rich.console import Console

    from mpdit_bench.cli import render

    console = Console(width=80, record=True, file=open("/dev/null", "w"))
    monkeypatch.setattr(render, "console", console)
    row = {"batch": 1, "device": "cpu", "sample_steps": 250, "sampler": "heun2", "cfg_scale": 1.5,
           "params": 675.43e6, "gflops_per_evaluation": 118.689, "gflops_per_image": 59344.5, "images_per_s": 0.12,
           "seconds_per_iter_median": 8.1234, "peak_memory_bytes": 12345.6 * 2**20, "memory_method": "cuda"}
    result = {"mode": "sample", "a": {**row, "model": "PPF-XL-2"}, "b": {**row, "model": "SiT-XL/2"},
              "gflops_ratio_a_over_b": 0.62, "throughput_ratio_a_over_b": 1.6, "memory_ratio_a_over_b": 1.0,
              "path": "results/bench/x.json"}
    render.print_comparison(result)
    table = [line for line in console.export_text().splitlines() if line.startswith(("│", "┃", "┏", "└"))]
    assert table and max(len(line) for line in table) <= 80
    assert "…" not in "".join(table)
    assert "59344.500" in "".join(table) and "12345.6" in "".join(table)
