"""The GPU check's CPU smoke mode (same code path, tiny models) and its batch search and budget."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mpdit_bench.bench import gpu_check as G
from mpdit_bench.bench import measure as M
from mpdit_bench.bench.report import JSON_NAME, MARKDOWN_NAME, TARGETS
from mpdit_bench.engine.train import Trainer
from mpdit_bench.evaluation.seeded_inception import seeded_inception_weights

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """`bench gpu --device cpu --small` through the CLI, as scripts/gpu_check.sh smoke runs it."""
    out = tmp_path_factory.mktemp("gpu_check")
    done = subprocess.run([sys.executable, "-m", "mpdit_bench", "bench", "gpu", "--device", "cpu", "--small",
                           "--threads", "1", "--no-compile", "--inception-weights", "seeded", "--out-dir", str(out)],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return json.loads((out / JSON_NAME).read_text()), (out / MARKDOWN_NAME).read_text(), done.stdout


def test_smoke_measures_every_phase(smoke):
    result, _, _ = smoke
    assert result["small"] and result["models"] == ["MPDiT-XL", "SiT-XL/2"]
    assert result["errors"] == [] and result["skipped"] == []
    assert result["peak"]["flops_per_s"] > 0 and result["peak"]["dtype"] == "float32"
    rows = {(r["model"], r["kind"]): r for r in result["train"]}
    assert set(rows) == {(m, k) for m in result["models"] for k in ("common", "largest")}
    for row in rows.values():
        assert not row["oom"] and row["compile"] == "eager"
        assert row["steps_per_s"] > 0 and row["images_per_s"] == pytest.approx(row["batch"] * row["steps_per_s"])
        assert row["peak_memory_bytes"] >= 0 and len(row["seconds_per_step_all"]) == result["settings"]["iters"]
        # MFU as defined: images/s x 6 x the model's multiply-adds per image / the measured matmul rate
        assert row["mfu"] == pytest.approx(row["images_per_s"] * row["train_flops_per_image"]
                                           / result["peak"]["flops_per_s"])
        assert 0 < row["mfu"] < 1
        assert row["train_flops_per_image"] == 6 * row["model_flops_per_image"]
    # the CPU cannot run out of memory here: the search stops at its limit after doubling
    for search in result["batch_search"]:
        assert search["stopped_by"] == "limit" and search["batch"] == result["settings"]["batch_limit"]
        assert [b for b, _ in search["probes"]] == [4, 8]
    assert {r["model"] for r in result["sample"]} == set(result["models"])
    assert all(r["images_per_s"] > 0 and r["forward_batch"] == 2 * r["batch"] for r in result["sample"])
    ev = result["eval"]
    assert ev["weights"].startswith("seeded") and ev["cpu_images_per_s"] > 0
    assert ev["variants"][0]["equal_within_tolerance"] and ev["variants"][0]["rel_err_pool3"] <= M.EVAL_TOLERANCE
    assert set(result["profile"]) == set(result["models"]) and result["profile"]["MPDiT-XL"][0]["self_ms_per_step"] > 0


def test_smoke_markdown_and_targets(smoke):
    result, md, stdout = smoke
    assert md.startswith("# GPU check: MPDiT-XL vs SiT-XL/2 (small)") and md in stdout
    for heading in ("## Training", "## Sampling", "## Evaluation", "## Profile: MPDiT-XL", "## Targets"):
        assert heading in md
    goals = {(t["target"].split(",")[0], t["where"]): t for t in result["targets"]}
    common = [r for r in result["train"] if r["kind"] == "common"]
    step = common[0]["seconds_per_step_median"] / common[1]["seconds_per_step_median"]
    eager = goals[("step time MPDiT-XL / SiT-XL/2", "eager")]
    assert eager["value"] == pytest.approx(step) and eager["met"] == (step <= TARGETS["step_time_ratio"])
    assert f"| {step:.3f} |" in md
    compiled = [t for t in result["targets"] if t["where"] == "compile"]
    assert compiled and all(t["value"] is None and t["met"] is None for t in compiled)  # --no-compile
    assert "not measured" in md


def test_batch_search_doubles_then_bisects():
    calls = []

    def fits(batch):
        calls.append(batch)
        return batch <= 700

    found = M.largest_batch(fits, 128, 4096, bisect=3)
    assert calls[:3] == [256, 512, 1024]  # doubling until the first out-of-memory
    assert calls[3:] == [768, 640, 704]   # then halving the gap, on multiples of 8 while the gap allows
    assert found["batch"] == 640 and found["stopped_by"] == "out of memory"
    assert M.largest_batch(lambda b: True, 128, 1000, bisect=3) == {
        "batch": 512, "probes": [(256, True), (512, True)], "stopped_by": "limit", "limit": 1000}


def test_out_of_memory_is_a_row_not_a_failure(monkeypatch, tmp_path):
    trainer = M.engine_trainer("MPDiT-XL", G.model_overrides("MPDiT-XL", True, G.SMALL["overrides"]),
                                torch.device("cpu"), None, tmp_path)

    def too_big(tr, x, y):
        if len(x) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return 1.0

    monkeypatch.setattr(M, "engine_train_step", too_big)
    assert M.measure_train(trainer, 4, 1, 1, 1e9) == {"batch": 4, "oom": True}
    assert M.largest_training_batch(trainer, 1, 64, bisect=2)["batch"] == 2


def test_engine_step_is_the_trainers(tmp_path):
    tr = M.engine_trainer("SiT-XL/2", G.model_overrides("SiT-XL/2", True, G.SMALL["overrides"]),
                           torch.device("cpu"), None, tmp_path)
    assert isinstance(tr, Trainer) and tr.mcfg.depths == (3,) and tr.mcfg.input_size == 8
    before = [p.detach().clone() for p in tr.model.parameters()]
    ema_before = [p.clone() for p in tr.ema.parameters()]
    x, y = M.random_batch(tr, 2)
    loss = M.engine_train_step(tr, x, y)
    assert loss > 0 and tr.position.step == 1 and not (tmp_path / "run").exists()  # no checkpoint, no logs
    assert any(not torch.equal(a, p) for a, p in zip(before, tr.model.parameters()))
    assert any(not torch.equal(a, p) for a, p in zip(ema_before, tr.ema.parameters()))  # decay 0.9999 < 1


def test_budget_stops_and_still_writes(tmp_path):
    result = G.run_gpu_check(tmp_path, device="cpu", small=True, budget_s=0.0, compile=False,
                             inception_weights="seeded")
    assert result["peak"] is None and result["train"] == []
    assert result["skipped"][0] == "peak (time budget)" and len(result["skipped"]) == 4
    saved = json.loads((tmp_path / JSON_NAME).read_text())
    assert saved["skipped"] == result["skipped"]
    assert "Not run: peak (time budget)" in (tmp_path / MARKDOWN_NAME).read_text()


def test_unknown_setting_is_refused():
    done = subprocess.run([sys.executable, "-m", "mpdit_bench", "bench", "gpu", "--device", "cpu", "--small",
                           "--setting", "comon_batch=4"], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and "comon_batch" in done.stderr and "common_batch" in done.stderr


@pytest.mark.slow
def test_smoke_with_compile(tmp_path):
    """The torch.compile rows through dynamo (eager backend in small mode: no C++ build on the CPU)."""
    result = G.run_gpu_check(tmp_path, device="cpu", small=True, budget_s=300, inception_weights="seeded")
    assert result["errors"] == [] and result["skipped"] == []
    compiled = [r for r in result["train"] if r["compile"] == "compile"]
    assert {(r["model"], r["kind"]) for r in compiled} == {(m, k) for m in result["models"]
                                                           for k in ("common", "largest")}
    assert all(r["images_per_s"] > 0 and r["mfu"] > 0 for r in compiled)
    assert all(t["value"] is not None for t in result["targets"] if "step time" in t["target"])


def test_seeded_inception_features_are_not_degenerate(tmp_path):
    """Otherwise the CUDA-vs-CPU comparison on seeded weights would compare near-zero vectors."""
    from mpdit_bench.evaluation.features import InceptionFeatures

    feats = InceptionFeatures(seeded_inception_weights(tmp_path / "w.pth"), "cpu")(M.smooth_images(2, 32))
    pool3 = feats["pool3"]
    assert pool3.shape == (2, 2048) and 0.01 < pool3.std() < 10 and (pool3 > 0).mean() > 0.5
    assert abs(pool3[0] - pool3[1]).max() > 0.01 and feats["spatial"].std() > 1e-3
