"""`mpdit-bench import` on the source-format fixtures (../shared/fixtures): it writes a suite checkpoint that
`sample` takes, and refuses bad files and bad flags with one message and an exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpdit_bench import checkpoint

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"source-format fixtures not found at {FIXTURES}")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mpdit_bench", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=300)


def test_import_writes_a_checkpoint_sample_takes(tmp_path):
    out = tmp_path / "ppf.pt"
    proc = cli("import", str(FIXTURES / "ppflow_tiny" / "train_ckpt.pt"), "--out", str(out), "--source", "ppflow",
               "--num-heads", "2")
    assert proc.returncode == 0, proc.stderr
    assert "ppflow" in proc.stdout and str(out) in proc.stdout.replace("\n", "")
    ckpt = checkpoint.load(out)
    assert ckpt["imported_from"]["source"] == "ppflow"
    assert ckpt["run_config"]["sample"]["cfg_channels"] == 3
    samples = tmp_path / "s.npz"
    proc = cli("sample", str(out), "--num", "2", "--out", str(samples), "--steps", "2", "--device", "cpu",
               "--vae", str(tmp_path / "no-vae"))
    assert proc.returncode != 0 and "no-vae" in proc.stderr  # a latent model asks for its VAE, by path


def test_a_bad_file_exits_1_naming_it(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint")
    proc = cli("import", str(bad), "--out", str(tmp_path / "x.pt"))
    assert proc.returncode == 1
    assert str(bad) in proc.stderr.replace("\n", "") and "weights_only" in proc.stderr.replace("\n", "")
    assert not (tmp_path / "x.pt").exists()


def test_a_bad_source_flag_exits_2(tmp_path):
    proc = cli("import", str(FIXTURES / "sit_tiny" / "released.pt"), "--out", str(tmp_path / "x.pt"),
               "--source", "dit")
    assert proc.returncode == 2
    assert "--source" in proc.stderr and "mpdit, sit, ppflow" in proc.stderr
    assert not (tmp_path / "x.pt").exists()


def test_an_architecture_other_than_expected_is_refused(tmp_path):
    proc = cli("import", str(FIXTURES / "sit_tiny" / "released.pt"), "--out", str(tmp_path / "x.pt"),
               "--expect", "SiT-XL/2")
    assert proc.returncode == 1 and "SiT-XL/2" in proc.stderr
    assert not (tmp_path / "x.pt").exists()
