import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from _tiny import tiny_run
from mpdit_bench import checkpoint
from mpdit_bench.engine import distributed
from mpdit_bench.engine.sampling import sample_checkpoint
from mpdit_bench.engine.train import train
from mpdit_bench.sweeps.pipeline import free_port

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def _torchrun(*args, nproc=2):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "mpdit_bench", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_single_process_info_from_env(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    info = distributed.setup("cpu")
    assert (info.rank, info.local_rank, info.world_size, info.is_main) == (0, 0, 1, True)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        distributed.setup("cpu")
    with pytest.raises(ValueError, match="allowed: auto, cpu, cuda"):
        distributed.setup("tpu")


def test_two_gloo_ranks_match_one_process_and_sample_the_same(tmp_path):
    cfg = tiny_run(steps=4, ckpt_every=4)  # global batch 8: 4 per rank under torchrun
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    train(cfg, tmp_path / "one")
    _torchrun("train", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "two"))
    one = checkpoint.load(tmp_path / "one" / "checkpoints" / "last.pt")
    two = checkpoint.load(tmp_path / "two" / "checkpoints" / "last.pt")
    assert two["world_size"] == 2 and len(two["rng"]) == 2 and two["step"] == 4
    assert not torch.equal(two["rng"][0]["cpu"], two["rng"][1]["cpu"])  # each rank's own RNG state is kept
    for key, a in one["model"].items():
        assert torch.allclose(a, two["model"][key], rtol=1e-5, atol=1e-6), key
    moved = sum((a - one["ema"][k]).abs().sum() for k, a in two["ema"].items())
    assert moved < 1e-3

    ckpt = tmp_path / "one" / "checkpoints" / "last.pt"
    sample_checkpoint(ckpt, 5, tmp_path / "s1.npz", steps=3, cfg_scale=2.0, progress=False)
    _torchrun("sample", str(ckpt), "--num-samples", "5", "--out", str(tmp_path / "s2.npz"), "--steps", "3",
              "--cfg-scale", "2", "--device", "cpu")
    with np.load(tmp_path / "s1.npz") as a, np.load(tmp_path / "s2.npz") as b:
        assert np.array_equal(a["arr_1"], b["arr_1"])
        assert np.abs(a["arr_0"].astype(int) - b["arr_0"].astype(int)).max() <= 1


def _two_nodes(tmp_path, *args):
    """`torchrun --nnodes 2 --nproc_per_node 1` twice, as on two machines: c10d rendezvous on 127.0.0.1,
    each node agent in its own folder (relative paths land there, as on disks that are not shared)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = []
    for node in ("node_a", "node_b"):
        (tmp_path / node).mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
               "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=two-nodes",
               "-m", "mpdit_bench", *args]
        procs.append(subprocess.Popen(cmd, cwd=tmp_path / node, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
    return [tmp_path / node for node in ("node_a", "node_b")]


def test_two_nodes_train_and_sample_like_one_process_and_only_global_rank_0_writes(tmp_path):
    cfg = tiny_run(steps=4, ckpt_every=4)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    train(cfg, tmp_path / "one")
    nodes = _two_nodes(tmp_path, "train", str(tmp_path / "run.yaml"), "--out", "run")
    written = [n for n in nodes if (n / "run").exists()]
    assert len(written) == 1 and not any(f.is_file() for n in nodes if n not in written for f in n.rglob("*"))
    one = checkpoint.load(tmp_path / "one" / "checkpoints" / "last.pt")
    two = checkpoint.load(written[0] / "run" / "checkpoints" / "last.pt")
    assert two["world_size"] == 2 and len(two["rng"]) == 2 and two["step"] == 4
    for key, a in one["model"].items():
        assert torch.allclose(a, two["model"][key], rtol=1e-5, atol=1e-6), key

    ckpt = tmp_path / "one" / "checkpoints" / "last.pt"
    sample_checkpoint(ckpt, 5, tmp_path / "s1.npz", steps=3, cfg_scale=2.0, progress=False)
    # each rank writes its shard beside --out and global rank 0 merges them: --out on a disk both nodes see
    _two_nodes(tmp_path, "sample", str(ckpt), "--num-samples", "5", "--out", str(tmp_path / "s2.npz"), "--steps",
               "3", "--cfg-scale", "2", "--device", "cpu")
    with np.load(tmp_path / "s1.npz") as a, np.load(tmp_path / "s2.npz") as b:
        assert np.array_equal(a["arr_1"], b["arr_1"])
        assert np.abs(a["arr_0"].astype(int) - b["arr_0"].astype(int)).max() <= 1


def test_the_sweep_runners_launch_for_several_processes(tmp_path):
    from mpdit_bench.sweeps.runspec import RunSpec
    from mpdit_bench.sweeps.pipeline import Pipeline, train_command

    from mpdit_bench.models import model_config

    cfg = tiny_run(steps=4, ckpt_every=4)
    resolved = model_config(cfg["model"], **cfg["model_overrides"], in_channels=1, num_classes=10, input_size=32)
    spec = RunSpec("e", "cpu", "two ranks", cfg["model"], cfg["model_overrides"], resolved.to_dict(),
                   resolved.to_dict(), 256, 2, cfg["data"], cfg["train"], {}, {}, run_id="r2")
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    assert train_command(spec, run, env=env)[:3] == ["torchrun", "--standalone", "--nproc_per_node=2"]
    summary = Pipeline().train(spec, run)
    assert summary["world_size"] == 2 and summary["final_step"] == 4
    train(cfg, tmp_path / "one")
    one = checkpoint.load(tmp_path / "one" / "checkpoints" / "last.pt")["model"]
    two = checkpoint.load(run / "checkpoints" / "last.pt")["model"]
    assert all(torch.allclose(a, two[k], rtol=1e-5, atol=1e-6) for k, a in one.items())
