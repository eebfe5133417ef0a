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


def test_bench_cli_rejects_unknown_mode():
    done = subprocess.run([sys.executable, "-m", "mpdit_bench", "bench", "infer", "--model", "b", "--vs", "l"],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and "train, sample" in done.stderr


def test_bench_cli_train_needs_both_models():
    done = subprocess.run([sys.executable, "-m", "mpdit_bench", "bench", "train", "--model", "b"],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and "needs --model and --vs" in done.stderr
