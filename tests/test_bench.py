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
