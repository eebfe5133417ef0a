"""What the commands print on a terminal: the dry-run table at 80 and 120 columns, and `train`'s summary."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _data import needs_fashion_mnist  # noqa: E402
from _tiny import TINY_RUN  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def mpdit_bench(*args, columns=None, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("OMP_NUM_THREADS", None)
    if columns:
        env["COLUMNS"] = str(columns)
    done = subprocess.run([sys.executable, "-m", "mpdit_bench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_the_dry_run_table_fits_the_terminal_and_never_cuts_a_run_id(scale):
    runs = json.loads(mpdit_bench("sweep", "ablation_k", "--scale", scale, "--dry-run", "--json"))
    for columns in (80, 120):
        out = mpdit_bench("sweep", "ablation_k", "--scale", scale, "--dry-run", columns=columns)
        lines = out.splitlines()
        assert max(len(line) for line in lines) <= columns
        starts = [line.split()[0] for line in lines if line.strip()]
        for run in runs:  # each id whole, at the start of its row
            assert run["run_id"] in starts, (columns, run["run_id"])
        text = " ".join(out.split())
        assert f"assuming {2 if scale == 'cpu' else 1} local worker(s)" in text  # the scale's `workers`
        assert ("Left out below 120 columns" in text) == (columns < 120)
        header = next(line for line in lines if line.startswith("run "))
        assert ("procs" in header) == (scale == "paper" and columns == 120)  # 8 each: a note at 80 columns
        assert ("Every run: 8 processes." in text) == (scale == "paper" and columns == 80)


@needs_fashion_mnist
def test_train_prints_its_config_size_and_validation_loss(tmp_path):
    run = copy.deepcopy(TINY_RUN)
    run["train"].update(steps=4, val_every=2, val_size=16)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    out = mpdit_bench("train", "run.yaml", "--out", "run", cwd=tmp_path)
    text = " ".join(out.split())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert f"model MPDiT-B: patches (8, 4) depths (1, 1) D=32 m=2; {summary['params'] / 1e6:.2f} M parameters" in text
    assert "GFLOPs per image" in text and "data fashion-mnist: 16 training items of 1x32x32, 10 classes" in text
    assert "global batch 8" in text and "steps 0 -> 4, lr 0.001" in text and "fp32 on cpu" in text
    lines = [line for line in out.splitlines() if "validation loss" in line]
    assert [line.split()[:4] for line in lines] == [["step", "2", "validation", "loss"],
                                                    ["step", "4", "validation", "loss"]]
    assert float(lines[-1].split()[-1]) == pytest.approx(summary["last_val_loss"], abs=5e-5)  # printed to 4 places
