"""A user's mistakes meet one clear message and exit code 2, never a traceback, whatever the command.

Each invocation runs through ``mpdit_bench.cli.main``, the entry point of ``mpdit-bench`` and ``python -m
mpdit_bench``, so that its ConfigError handler is part of what is tested. A machine without CUDA is
simulated, so that the commands asking for CUDA are mistakes on any machine.
"""

import copy
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _tiny import TINY_RUN  # noqa: E402

from mpdit_bench import cli  # noqa: E402
from mpdit_bench.engine.distributed import NO_CUDA  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


def _write_inputs(folder: Path) -> None:
    """The files the mistakes name: a run config and an experiment with a misspelled key, a reference batch of
    the wrong size, samples, a truncated checkpoint, a folder that is not a VAE, a file that is not YAML."""
    run = copy.deepcopy(TINY_RUN)
    (folder / "run.yaml").write_text(yaml.safe_dump(run))
    run["train"]["step"] = run["train"].pop("steps")
    (folder / "run_typo.yaml").write_text(yaml.safe_dump(run))
    exp = yaml.safe_load((EXPERIMENTS / "ablation_k.yaml").read_text())
    exp["scales"]["cpu"]["train"]["step"] = exp["scales"]["cpu"]["train"].pop("steps")
    (folder / "exp_typo.yaml").write_text(yaml.safe_dump(exp))
    np.savez(folder / "badref.npz", mu=np.zeros(10), sigma=np.eye(10))
    np.savez(folder / "samples.npz", arr_0=np.zeros((8, 32, 32, 3), np.uint8))
    (folder / "trunc.pt").write_bytes(b"PK\x03\x04 cut short")
    (folder / "notavae").mkdir()
    (folder / "notavae" / "readme.txt").write_text("no model here")
    (folder / "broken.yaml").write_text("train: [1, 2\n")


XL_RUN = str(EXPERIMENTS / "train_mpdit_xl_256.yaml")
FMNIST_RUN = str(EXPERIMENTS / "train_fmnist_cpu.yaml")
ABLATION = str(EXPERIMENTS / "ablation_k.yaml")
SPACE = str(EXPERIMENTS / "search_space.yaml")

# (arguments, what the one message must say)
MISTAKES = [
    # asking for CUDA on a machine without it
    (["evaluate", "samples.npz", "--ref", "fashion-mnist:test:10", "--device", "cuda", "--metrics", "proxy"], NO_CUDA),
    (["train", "run.yaml", "--set", "train.device=cuda", "--out", "r"], NO_CUDA),
    (["train", XL_RUN, "--out", "xl"], NO_CUDA),
    (["sample", "trunc.pt", "--num", "4", "--device", "cuda"], NO_CUDA),
    (["bench", "sample", "--model", "b", "--vs", "SiT-B/2", "--device", "cuda"], NO_CUDA),
    (["bench", "gpu", "--small", "--device", "cuda"], NO_CUDA),
    # worker counts
    (["sweep", "ablation_k", "--dry-run", "--workers", "-3"], "--workers -3 is invalid"),
    (["sweep", "ablation_k", "--dry-run", "--workers", "0"], "--workers 0 is invalid"),
    # misspelled keys, named as written
    (["train", "run_typo.yaml", "--out", "r"], "'train.step' = 6 is invalid; allowed: did you mean 'steps'?"),
    (["sweep", "exp_typo.yaml", "--dry-run"], "'train.step' = 160 is invalid; allowed: did you mean 'steps'?"),
    (["flops", "--model", "b", "--set", "refine_dept=4"], "did you mean 'refine_depth'?"),
    # a file given to the wrong command
    (["sweep", FMNIST_RUN, "--dry-run"], "is a run config, not an experiment: use `mpdit-bench train"),
    (["search", "ablation_k"], "is an experiment, not a search space: use `mpdit-bench sweep"),
    (["train", ABLATION], "is an experiment, not a run config: use `mpdit-bench sweep"),
    (["sweep", SPACE, "--dry-run"], "is a search space, not an experiment: use `mpdit-bench search"),
    # a reference batch of the wrong size
    (["evaluate", "samples.npz", "--ref", "badref.npz", "--metrics", "fid"], "mu (10,) / sigma (10, 10) are invalid"),
    # files that do not exist
    (["evaluate", "missing.npz", "--ref", "fashion-mnist:test:10"], "'missing.npz' does not exist"),
    (["evaluate", "samples.npz", "--ref", "missing.npz"], "'missing.npz' does not exist"),
    (["train", "missing.yaml"], "'missing.yaml' is invalid; allowed: an existing YAML file"),
    (["sweep", "missing_experiment", "--dry-run"], "'experiment' = 'missing_experiment' is invalid"),
    (["search", "missing_space"], "'experiment' = 'missing_space' is invalid"),
    (["sample", "missing.pt", "--num", "4"], "missing.pt: no such checkpoint file"),
    (["convert", "missing.pt", "--out", "x.pt"], "'missing.pt' is invalid; allowed: an existing checkpoint file"),
    (["train", "run.yaml", "--set", "data.name=latents", "--set", "data.path=no_store", "--out", "r"],
     "no_store/latents.npy: missing"),
    (["extract-latents", "--images", ".", "--vae", "missing_vae", "--out", "lat"], "--vae missing_vae: no such"),
    # truncated or unreadable files
    (["sample", "trunc.pt", "--num", "4"], "trunc.pt: not a readable checkpoint"),
    (["convert", "trunc.pt", "--out", "x.pt"], "a torch checkpoint readable with weights_only=True"),
    (["convert", "trunc.pt", "--out", "x.npz"], "'x.npz' is invalid; allowed: a checkpoint file ending in .pt or .pth"),
    (["import", "trunc.pt", "--out", "x.npz"], "'x.npz' is invalid; allowed: a checkpoint file ending in .pt or .pth"),
    (["convert", "trunc.pt", "--out", "x.pt", "--level-embed-init", "uniform"],
     "--level-embed-init 'uniform' is invalid; allowed: zero, normal"),
    (["train", "broken.yaml"], "valid YAML"),
    # bad --set syntax and values
    (["train", "run.yaml", "--set", "train.lr"], "key=value"),
    (["flops", "--model", "b", "--set", "refine_depth"], "key=value"),
    (["train", "run.yaml", "--set", "train.lr=fast"], "'train.lr' = 'fast' is invalid"),
    (["flops", "--model", "b", "--set", "refine_depth=-1"], "'refine_depth' = -1 is invalid"),
    # unknown names
    (["flops", "--model", "NoSuchModel"], "'model' = 'NoSuchModel' is invalid"),
    (["train", "run.yaml", "--set", "model=NoSuchModel"], "'model' = 'NoSuchModel' is invalid"),
    (["bench", "sample", "--model", "NoSuchModel", "--vs", "SiT-B/2"], "'model' = 'NoSuchModel' is invalid"),
    (["bench", "train", "--model", "b", "--vs", "NoSuchModel"], "'model' = 'NoSuchModel' is invalid"),
    (["evaluate", "samples.npz", "--ref", "fashion-mnist:val"], "dataset 'fashion-mnist:val' is unknown"),
    # bad flag values
    (["sample", "trunc.pt", "--num", "4", "--cfg-scale", "strong"], "'--cfg-scale' = 'strong' is invalid"),
    (["sample", "trunc.pt", "--num", "4", "--sampler", "rk4"], "'sampler' = 'rk4' is invalid"),
    (["sample", "trunc.pt", "--num", "0"], "'--num' = 0 is invalid"),
    (["evaluate", "samples.npz", "--ref", "fashion-mnist:test:10", "--metrics", "fid,fdd"], "'--metrics' = 'fdd'"),
    (["evaluate", "samples.npz", "--ref", "fashion-mnist:test:10", "--device", "tpu"], "'--device' = 'tpu'"),
    (["evaluate", "samples.npz", "--ref", "fashion-mnist:test:10", "--bootstrap", "1"], "'--bootstrap' = 1"),
    (["tables", "--scale", "huge"], "--scale 'huge' is invalid; allowed: paper, cpu"),
    (["tables", "--table", "99"], "'--table' = '99' is invalid"),
    (["sweep", "ablation_k", "--scale", "huge", "--dry-run"], "'--scale' = 'huge' is invalid"),
    (["sweep", "ablation_k", "--seeds", "0", "--dry-run"], "'--seeds' = 0 is invalid"),
    (["models", "--resolution", "0"], "'resolution' = 0 is invalid"),
    (["bench", "sample", "--model", "b", "--vs", "SiT-B/2", "--batch", "0"], "--batch 0 is invalid"),
    (["bench", "gpu", "--small", "--budget-s", "0"], "--budget-s 0 is invalid"),
    (["bench", "gpu", "--small", "--inception-weights", "missing.pth"],
     "--inception-weights 'missing.pth' is invalid; allowed: auto, real, seeded, or an existing"),
    (["search", "search_space", "--storage", "nodb://x"], "--storage 'nodb://x' is invalid"),
    (["search", "search_space", "--trials", "-1"], "--trials -1 is invalid"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mistakes")
    _write_inputs(folder)
    return folder


def run_main(args, monkeypatch, capsys, folder):
    """``mpdit-bench ARGS`` in this process on a machine without CUDA: (exit code, stdout + stderr). An
    exception escaping ``main`` is a traceback the user would see, returned as the output with code None."""
    monkeypatch.chdir(folder)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["mpdit-bench", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    except BaseException:  # noqa: BLE001 - what the user would see as a traceback
        return None, traceback.format_exc()
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_the_list_covers_every_command_that_takes_input():
    assert len(MISTAKES) >= 30
    commands = {args[0] if args[0] != "bench" else " ".join(args[:2]) for args, _ in MISTAKES}
    assert commands >= {"train", "sample", "evaluate", "sweep", "search", "convert", "flops", "models", "tables",
                        "extract-latents", "bench sample", "bench train", "bench gpu"}


@pytest.mark.parametrize("args, says", MISTAKES, ids=[" ".join(a)[:60] for a, _ in MISTAKES])
def test_a_mistake_gets_one_clear_message_and_exit_code_2(args, says, inputs, monkeypatch, capsys):
    code, output = run_main(args, monkeypatch, capsys, inputs)
    assert code == 2 and "Traceback" not in output, output
    text = " ".join(output.split())  # rich wraps long lines
    assert says in text, output
    assert text.count("error:") == 1, output  # one message, not one per layer


def test_a_misspelled_key_is_named_not_the_key_it_stands_for(inputs, monkeypatch, capsys):
    """The experiment's scale section spells `step`: the message names `step`, not a missing `steps`."""
    code, output = run_main(["sweep", "exp_typo.yaml", "--dry-run"], monkeypatch, capsys, inputs)
    assert code == 2 and "'train.step'" in output and "steps' = None" not in output


def test_flags_are_checked_before_the_checkpoint_is_read(inputs, monkeypatch, capsys):
    """trunc.pt would be refused as unreadable: a bad flag is reported first, without reading it."""
    for args, flag in ((["--cfg-scale", "x"], "--cfg-scale"), (["--device", "cuda"], "--device"),
                       (["--labels", "many"], "labels")):
        code, output = run_main(["sample", "trunc.pt", "--num", "4", *args], monkeypatch, capsys, inputs)
        assert code == 2 and f"'{flag}'" in output and "not a readable checkpoint" not in output


def test_a_real_bug_still_shows_its_traceback(inputs, monkeypatch, capsys):
    """main reports bad input only: an error that is not the user's keeps its traceback for the bug report."""
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("mpdit_bench.counting.count_model", broken)
    code, output = run_main(["flops", "--model", "b"], monkeypatch, capsys, inputs)
    assert code is None and "ZeroDivisionError: a bug" in output


def test_one_device_check_for_every_command(monkeypatch):
    from mpdit_bench.config import ConfigError
    from mpdit_bench.engine.distributed import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    for asked, says in (("cuda", NO_CUDA), ("cuda:1", NO_CUDA), ("tpu", "auto, cpu, cuda or cuda:N"),
                        ("mps", "auto, cpu, cuda or cuda:N")):
        with pytest.raises(ConfigError, match=f"'train.device' = '{asked}'.*{says}"):
            resolve_device(asked, "train.device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="cuda:0 to cuda:1"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("args, says", [
    (["sweep", "exp_typo.yaml", "--dry-run"], "did you mean 'steps'?"),
    (["evaluate", "samples.npz", "--ref", "badref.npz", "--metrics", "fid"], "(2048,) / (2048, 2048)"),
    (["search", "ablation_k"], "use `mpdit-bench sweep"),
    # diffusers logs through a handler bound to the stderr of the process that first imported it: run apart
    (["extract-latents", "--images", ".", "--vae", "notavae", "--out", "lat"], "not an AutoencoderKL folder"),
])
def test_the_installed_entry_point_reports_the_same(args, says, inputs):
    """`python -m mpdit_bench` as a user runs it, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "mpdit_bench", *args], cwd=inputs, env=env, capture_output=True,
                          text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in output and says in " ".join(output.split()), output
