"""The pipeline of one run: count -> train -> heldout -> sample -> evaluate -> curve, each phase the suite's
command line (docs/CONTRACTS.md). ("Stages" are PPFlow's, over sampling time; a run has phases.) The curve
phase evaluates the checkpoints kept along training (`sweeps.curve`) with the same functions.

Each phase builds the exact command another part of the suite documents and parses what it leaves on
disk. Training goes through ``torchrun`` when a run asks for several processes, so a local sweep and a
Slurm job launch the same commands. A one-process run calls, inside the worker, the function each
command calls, with the same arguments and the same files: three process start-ups per run (torch's
import, the optimizer's import of torch._dynamo, the Inception network) are about 15 s of a CPU-scale
run. Tests replace `Pipeline` with cheap fakes of the same shape, or point ``entry`` at a stand-in CLI.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from mpdit_bench.config import ModelConfig
from mpdit_bench.evaluation.metric_table import HELDOUT_LOSS, flags_for
from mpdit_bench.files import write_text_atomic
from mpdit_bench.sweeps.runspec import RunSpec

ValidationHook = Callable[[int, float], None]  # on_validation(step, val_loss); may raise to stop training


class PhaseError(RuntimeError):
    """A phase's command failed, or left no result; the message names the command and the tail of its log."""


# ---- command lines ---------------------------------------------------------------------------------
ENTRY = ("-m", "mpdit_bench")  # what python / torchrun run: the suite's CLI


def slurm_nodes(env: Mapping[str, str]) -> int:
    """Nodes of the Slurm job this process runs in (1 outside Slurm)."""
    return int(env.get("SLURM_JOB_NUM_NODES") or 1) if env.get("SLURM_JOB_ID") else 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def train_command(spec: RunSpec, run_dir: Path, entry: tuple[str, ...] = ENTRY,
                  env: Mapping[str, str] | None = None) -> list[str]:
    """One process; torchrun on this node for ``nproc > 1``; inside a Slurm job of N > 1 nodes, one torchrun
    per node through srun, meeting at a c10d rendezvous on this node (the job's batch host, its first)."""
    env = os.environ if env is None else env
    tail = ["train", str(run_dir / "config.yaml"), "--out", str(run_dir)]
    nodes = slurm_nodes(env)
    if nodes > 1:
        return ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
                "torchrun", f"--nnodes={nodes}", f"--nproc_per_node={spec.nproc}", "--rdzv_backend=c10d",
                f"--rdzv_endpoint={socket.gethostname()}:{free_port()}",
                f"--rdzv_id={env['SLURM_JOB_ID']}-{spec.run_id}", *entry, *tail]
    if spec.nproc > 1:
        return ["torchrun", "--standalone", f"--nproc_per_node={spec.nproc}", *entry, *tail]
    return [sys.executable, *entry, *tail]


# a run's `sample` / `eval` keys and the flags of the command that takes them (absent: the command's default)
SAMPLE_FLAGS = (("sampler", "--sampler"), ("steps", "--steps"), ("cfg_scale", "--cfg-scale"), ("seed", "--seed"),
                ("batch_size", "--batch-size"), ("guidance_interval", "--guidance-interval"), ("labels", "--labels"),
                ("device", "--device"), ("vae", "--vae"))
EVALUATE_FLAGS = (("device", "--device"), ("batch_size", "--batch-size"), ("bootstrap", "--bootstrap"))


def sample_command(spec: RunSpec, run_dir: Path, entry: tuple[str, ...] = ENTRY, checkpoint: Path | None = None,
                   out: Path | None = None, num: int | None = None) -> list[str]:
    """Sampling of the run's last.pt into RUN/samples.npz, or of ``checkpoint`` into ``out`` (``num`` samples)."""
    s = spec.sample
    cmd = [sys.executable, *entry, "sample", str(checkpoint or run_dir / "checkpoints" / "last.pt"),
           "--num", str(num or s["num"]), "--out", str(out or run_dir / "samples.npz")]
    for key, flag in SAMPLE_FLAGS:
        if key in s:  # a list (one guidance scale per PPFlow stage) is the flag's comma form
            cmd += [flag, ",".join(map(str, s[key])) if isinstance(s[key], list) else str(s[key])]
    return cmd


def cli_metrics(names: list[str]) -> str:
    """Result keys (the contract's JSON keys) to `evaluate --metrics` names: precision -> prec, and one
    ``proxy`` for all the Fashion-MNIST proxy metrics."""
    return ",".join(flags_for(names))


def evaluate_command(spec: RunSpec, run_dir: Path, entry: tuple[str, ...] = ENTRY, samples: Path | None = None,
                     metrics: list[str] | None = None) -> list[str]:
    """Evaluation of RUN/samples.npz on eval.metrics, or of ``samples`` on ``metrics``."""
    e = spec.eval
    cmd = [sys.executable, *entry, "evaluate", str(samples or run_dir / "samples.npz"), "--ref", e["ref"],
           "--metrics", cli_metrics(metrics or e["metrics"]), "--json"]
    for key, flag in EVALUATE_FLAGS:
        if key in e:
            cmd += [flag, str(e[key])]
    return cmd


def evaluate_options(spec: RunSpec, metrics: list[str] | None = None) -> dict[str, Any]:
    """The run's evaluation as `evaluation.evaluate` keywords: what `evaluate_command` passes as flags."""
    e = spec.eval
    return {"ref": e["ref"], "metrics": cli_metrics(metrics or e["metrics"]),
            **{k: e[k] for k, _ in EVALUATE_FLAGS if k in e}}


def evaluation_references(runs: list[RunSpec]) -> list[dict[str, Any]]:
    """The distinct `prepare_reference` keyword sets of these runs' evaluations, each checked to open."""
    from mpdit_bench.evaluation import open_source

    settings: list[dict[str, Any]] = []
    for spec in runs:
        if not spec.eval.get("ref"):
            continue
        kwargs = evaluate_options(spec)
        if kwargs not in settings:
            open_source(kwargs["ref"])  # a missing reference stops the sweep here, before any training
            settings.append(kwargs)
    return settings


def prepare_evaluations(settings: list[dict[str, Any]]) -> None:
    """Make the evaluation caches the runs will read (`evaluation.evaluate.prepare_reference`)."""
    from mpdit_bench.evaluation.evaluate import prepare_reference

    for kwargs in settings:
        prepare_reference(**kwargs)


# ---- running a command -----------------------------------------------------------------------------
def _die_with_parent() -> None:
    """In the child: receive SIGKILL when the sweep worker dies, so a killed sweep leaves no orphans."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_command(cmd: list[str], log: Path, poll: Callable[[], None] | None = None,
                env: dict[str, str] | None = None) -> None:
    """Run ``cmd`` with output appended to ``log``; ``poll`` is called every second and may raise to stop it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        try:
            while True:
                try:
                    proc.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    if poll is not None:
                        poll()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    if proc.returncode:
        tail = log.read_text()[-2000:]
        raise PhaseError(f"command failed with exit code {proc.returncode}: {' '.join(cmd)}\n{tail}")


@contextlib.contextmanager
def logged_in_process(log: Path, cmd: list[str]):
    """A phase run in this process writes what its command would print into the same log. Every torch
    setting is put back after it, as the command's process would leave the worker's untouched; the phases
    restore their own already, this guards the next phase against one that does not."""
    from mpdit_bench.engine.torch_settings import applied, current

    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        out.write(f"\n$ (in the sweep worker) {' '.join(cmd)}\n")
        out.flush()
        with applied(current()):
            yield


def sample_options(sample: dict[str, Any]) -> dict[str, Any]:
    """A run's ``sample`` section as `sample_checkpoint` keywords, as the `sample` command parses its flags."""
    from mpdit_bench.engine.sampling import parse_sample_options

    return parse_sample_options({k: sample[k] for k, _ in SAMPLE_FLAGS if k in sample})


def read_metrics_csv(path: Path) -> list[dict[str, float | None]]:
    """The training curve: metrics.csv rows as numbers (empty cells -> None)."""
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: (float(v) if v not in ("", None) else None) for k, v in row.items() if k})
    return rows


def last_json_object(text: str) -> dict[str, Any]:
    """The last line of ``text`` that is a JSON object (the evaluate command prints one)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    try:  # printed indented over several lines
        return json.loads(text[text.index("{"): text.rindex("}") + 1])
    except ValueError:
        raise PhaseError(f"no JSON object in the evaluate output:\n{text[-2000:]}") from None


# ---- the phases ------------------------------------------------------------------------------------
def write_run_config(spec: RunSpec, run_dir: Path) -> Path:
    """RUN/config.yaml, the run config training reads, keeping a checkpoint at each curve point
    (``train.keep_steps``). A resumed run keeps its written config; only the kept steps may grow, which a
    resume allows (`engine.run_config.RESUMABLE_TRAIN_KEYS`)."""
    from mpdit_bench.sweeps.curve import keep_steps

    config = run_dir / "config.yaml"
    run = yaml.safe_load(config.read_text()) if config.is_file() else spec.run_config()
    changed = not config.is_file()
    keep = keep_steps(spec)
    if keep:
        before = run["train"].get("keep_steps") or []
        wanted = sorted(set(before) | set(keep))
        if wanted != before:
            run["train"] = {**run["train"], "keep_steps": wanted}
            changed = True
    if changed:
        write_text_atomic(config, yaml.safe_dump(run, sort_keys=False))
    return config


def taken(result: dict[str, Any], names: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, intervals) of ``names`` from a heldout or evaluate result (``<name>_ci95`` intervals)."""
    return ({n: result.get(n) for n in names},
            {n: result[f"{n}_ci95"] for n in names if result.get(f"{n}_ci95") is not None})


class Pipeline:
    """count -> train -> heldout -> sample -> evaluate -> curve for one run directory; each returns a
    JSON-able dict."""

    names = ("count", "train", "heldout", "sample", "evaluate", "curve")

    def __init__(self, entry: tuple[str, ...] = ENTRY):
        self.entry = tuple(entry)  # tests point this at a stand-in CLI that follows the same contracts

    def in_process(self, spec: RunSpec) -> bool:
        """One process on one node, with the suite's own commands: run the phases inside this worker."""
        return self.entry == ENTRY and spec.nproc == 1 and slurm_nodes(os.environ) == 1

    def count(self, spec: RunSpec, run_dir: Path) -> dict[str, Any]:
        from mpdit_bench.counting import count_config

        result = count_config(ModelConfig.from_dict(spec.model_config), cross_check=False)
        return {k: result[k] for k in ("params", "params_trainable", "gflops", "gflops_analytic",
                                       "gflops_paper_convention", "config_hash")}

    def train(self, spec: RunSpec, run_dir: Path, on_validation: ValidationHook | None = None) -> dict[str, Any]:
        config = write_run_config(spec, run_dir)
        seen: set[int] = set()
        stamp = [0.0]

        def poll() -> None:  # pass new validation losses to the hook while training runs
            csv_path = run_dir / "metrics.csv"
            if on_validation is None or not csv_path.is_file() or csv_path.stat().st_mtime == stamp[0]:
                return
            stamp[0] = csv_path.stat().st_mtime
            for row in read_metrics_csv(csv_path):
                step, val = row.get("step"), row.get("val_loss")
                if step is not None and val is not None and int(step) not in seen:
                    seen.add(int(step))
                    on_validation(int(step), val)

        cmd, log = train_command(spec, run_dir, self.entry), run_dir / "logs" / "train.log"
        if self.in_process(spec):
            from mpdit_bench.engine.train import load_run_config, train

            with logged_in_process(log, cmd):
                train(load_run_config(config), run_dir, on_validation)
        else:
            run_command(cmd, log, poll)
            poll()
        summary = run_dir / "summary.json"
        if not summary.is_file() or not (run_dir / "checkpoints" / "last.pt").is_file():
            raise PhaseError(f"training finished without {summary} and checkpoints/last.pt")
        return json.loads(summary.read_text())

    def heldout(self, spec: RunSpec, run_dir: Path) -> dict[str, Any]:
        """The held-out flow-matching loss of the finished checkpoint (`evaluation.heldout`), in this process:
        a small forward-only pass needs no process of its own. Off with ``eval.heldout: false``."""
        if not spec.eval.get("heldout", spec.data.get("name") == "fashion-mnist"):
            return {"heldout_loss": None, "heldout_note": "eval.heldout is false"}
        return self.heldout_of(spec, run_dir / "checkpoints" / "last.pt")

    def heldout_of(self, spec: RunSpec, checkpoint: Path) -> dict[str, Any]:
        from mpdit_bench.evaluation.heldout import heldout_loss

        return heldout_loss(checkpoint, bootstrap=spec.eval.get("bootstrap", 1000) or 1000)

    def sample(self, spec: RunSpec, run_dir: Path, checkpoint: Path | None = None, out: Path | None = None,
               num: int | None = None) -> dict[str, Any]:
        """The run's samples (last.pt into RUN/samples.npz), or ``num`` of ``checkpoint`` into ``out``."""
        cmd, log = sample_command(spec, run_dir, self.entry, checkpoint, out, num), run_dir / "logs" / "sample.log"
        samples, num = out or run_dir / "samples.npz", num or spec.sample["num"]
        samples.parent.mkdir(parents=True, exist_ok=True)
        if self.in_process(spec):
            from mpdit_bench.engine.sampling import sample_checkpoint

            with logged_in_process(log, cmd):
                sample_checkpoint(checkpoint or run_dir / "checkpoints" / "last.pt", num, samples,
                                  **sample_options(spec.sample))
        else:
            run_command(cmd, log)
        if not samples.is_file():
            raise PhaseError(f"sampling finished without {samples}")
        grid = samples.with_suffix(".png")
        return {"samples": samples.name, "grid": grid.name if grid.is_file() else None, "num": num}

    def evaluate(self, spec: RunSpec, run_dir: Path, samples: Path | None = None,
                 metrics: list[str] | None = None) -> dict[str, Any]:
        """eval.metrics of the run's samples (RUN/samples.npz), or ``metrics`` of ``samples``."""
        log = run_dir / "logs" / "evaluate.log"
        cmd = evaluate_command(spec, run_dir, self.entry, samples, metrics)
        if self.in_process(spec):
            from mpdit_bench.evaluation import evaluate

            with logged_in_process(log, cmd):
                result = evaluate(str(samples or run_dir / "samples.npz"), **evaluate_options(spec, metrics))
                text = json.dumps(result)  # what the command prints: JSON's types, not numpy's
                print(text)
            return json.loads(text)
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(f"\n$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
        if proc.returncode:
            raise PhaseError(f"evaluate failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
        return last_json_object(proc.stdout)

    def curve(self, spec: RunSpec, run_dir: Path) -> dict[str, Any]:
        """The points of ``eval.every`` not evaluated yet, each from its kept checkpoint (`sweeps.curve`)."""
        from mpdit_bench.sweeps import curve
        from mpdit_bench.sweeps.budget import training_flops
        from mpdit_bench.sweeps.state import load_state

        if not curve.wanted(spec):
            return {"computed": [], "missing": [], "note": "eval.every is not set"}
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        final = curve.final_step_of(summary, spec)
        finished = load_state(run_dir)["phases"]

        def evaluate_point(step: int, checkpoint: Path, names: list[str]) -> dict[str, Any]:
            at_end = step == final and checkpoint.name == "last.pt"
            return self.curve_point(spec, run_dir, step, checkpoint, names, summary if at_end else None,
                                    finished if at_end else {})

        return curve.run_curve(spec, run_dir, final, training_flops(spec, spec.experiment), evaluate_point)

    def curve_point(self, spec: RunSpec, run_dir: Path, step: int, checkpoint: Path, names: list[str],
                    summary: dict[str, Any] | None, finished: dict[str, Any]) -> dict[str, Any]:
        """``names`` at one point of training. At the final step the run's own held-out and sample results
        are the point's when they were computed the same way on the same checkpoint (``finished``: the
        run's finished phases; ``summary``: its training summary)."""
        from mpdit_bench.sweeps.curve import curve_samples, sample_metric_names

        metrics: dict[str, Any] = {}
        intervals: dict[str, Any] = {}
        if HELDOUT_LOSS in names:
            result = (finished.get("heldout") or {}).get("result") or {}
            if result.get(HELDOUT_LOSS) is None:
                result = self.heldout_of(spec, checkpoint)
            for part, got in zip((metrics, intervals), taken(result, [HELDOUT_LOSS])):
                part.update(got)
        sampled = sample_metric_names(names)
        if sampled:
            num = curve_samples(spec)
            result = (finished.get("evaluate") or {}).get("result") or {} if spec.sample["num"] == num else {}
            if any(n not in result for n in sampled):
                out = run_dir / "curve" / f"step_{step}" / "samples.npz"
                self.sample(spec, run_dir, checkpoint, out, num)
                result = self.evaluate(spec, run_dir, out, sampled)
            for part, got in zip((metrics, intervals), taken(result, sampled)):
                part.update(got)
        if summary is not None and summary.get("train_seconds") is not None:
            wall = float(summary["train_seconds"])
        else:
            from mpdit_bench import checkpoint as checkpoints

            seconds = checkpoints.load(checkpoint).get("train_seconds")
            wall = None if seconds is None else float(seconds)
        return {"metrics": metrics, "intervals": intervals, "wall_s": wall}
