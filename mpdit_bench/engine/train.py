"""Training: flow matching with AdamW + EMA, one loop for 1 CPU process and torchrun over many GPUs.

The run config (YAML, sections ``model``, ``model_overrides``, ``data``, ``train``, ``sample``) is read
and checked by mpdit_bench.run_config. ``train(run_cfg, out_dir)`` writes RUN/config.yaml, metrics.csv, checkpoints/, summary.json
and resumes from RUN/checkpoints/last.pt when it exists: a run stopped at step s and resumed reproduces
the uninterrupted run bit for bit (same device and world size).

Global batch = per-rank batch x world size. Row r + world*j of each global batch is rank r's j-th
sample (DistributedSampler's interleaving); the noise of every row is drawn from (seed, step), so
2 ranks and 1 rank with the same global batch take the same gradient steps.

PPFlow (a model with ``time_patch_sizes``): t is drawn per stage in ``train.stage_proportions`` over the
global batch from the same (seed, step) generator (``ppflow.sample_stage_times``), so the guarantees
above hold; ``train.packing`` runs the mixed-stage batch as packed sequences (``ppflow.forward_packed``).
``train.init_from`` starts a new run from another checkpoint's model and EMA weights (e.g. ``convert``'s).
"""

from __future__ import annotations

import copy
import csv
import functools
import io
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler

from mpdit_bench.engine import checkpoint, distributed, flow
from mpdit_bench.ppflow import packing as ppflow
from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench.models import build_model
from mpdit_bench.engine.run_config import load_run_config, resolve_model_config, validate_run_config

METRIC_FIELDS = ("step", "epoch", "loss", "lr", "images_per_s", "wall_s", "val_loss")


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


# ---- data ------------------------------------------------------------------------------------------------
def build_datasets(data_cfg: dict[str, Any], val_size: int) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
    """(train, held-out validation). Fashion-MNIST validates on its test split; a latent store on its
    last ``val_size`` items, which are then not trained on."""
    if data_cfg["name"] == "fashion-mnist":
        from mpdit_bench.data.fashion_mnist import FashionMNIST

        return FashionMNIST("train", data_cfg["limit"]), FashionMNIST("test", val_size)
    import numpy as np

    from mpdit_bench.data.latents import LatentStore, read_stats

    num = len(np.load(Path(data_cfg["path"]) / "labels.npy", mmap_mode="r"))
    read_stats(data_cfg["path"])
    val_size = min(val_size, max(num // 10, 1))
    train_idx = np.arange(num - val_size)[: data_cfg["limit"]]
    return LatentStore(data_cfg["path"], train_idx), LatentStore(data_cfg["path"], np.arange(num - val_size, num))


def data_info(dataset: torch.utils.data.Dataset, data_cfg: dict[str, Any]) -> dict[str, Any]:
    """Geometry read from the data itself, plus what sampling needs to turn outputs into images."""
    x, _ = dataset[0]
    info = {"name": data_cfg["name"], "channels": int(x.shape[0]), "size": int(x.shape[-1]),
            "num_classes": int(dataset.num_classes)}
    if data_cfg["name"] == "latents":
        info.update(path=str(data_cfg["path"]), latent_mean=dataset.stats["mean"], latent_std=dataset.stats["std"],
                    resolution=dataset.stats.get("resolution"), classes=dataset.stats["classes"])
    return info


def epoch_batches(sampler: DistributedSampler, epoch: int, batch: int, start: int) -> list[list[int]]:
    """This rank's batches of ``epoch`` (full batches only), from batch ``start`` on."""
    sampler.set_epoch(epoch)
    idx = list(sampler)
    return [idx[b * batch:(b + 1) * batch] for b in range(start, len(idx) // batch)]


# ---- model helpers ------------------------------------------------------------------------------------
class PackedForward(torch.nn.Module):
    """``model(x, t, y)`` through Patch n' Pack: a mixed-stage batch in one pass of packed sequences.
    A module, so that DDP and torch.compile wrap it like the model itself."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ppflow.forward_packed(self.model, x, t, y)


def stage_times(mcfg: ModelConfig, proportions: list[float] | None) -> Callable | None:
    """The t draw for ``flow.draw``: per stage for a model with a patch schedule, else None (logit-normal)."""
    if not mcfg.time_patch_sizes:
        return None

    def times(n: int, generator: torch.Generator) -> torch.Tensor:  # (n,) grouped by stage, coarse first
        return ppflow.sample_stage_times(n, mcfg, proportions, generator, device=generator.device)

    return times


def init_weights_from(path: str, model: torch.nn.Module, ema: torch.nn.Module, mcfg: ModelConfig) -> None:
    """Model and EMA weights of the checkpoint at ``path`` (weights_only=True); its model config must be
    the run's. A checkpoint without "ema" starts the EMA at the model weights."""
    state = checkpoint.load(path)
    theirs = ModelConfig.from_dict(state["model_config"], source=f"{path} model_config").to_dict()
    ours = mcfg.to_dict()
    differ = {k: theirs[k] for k in ours if theirs[k] != ours[k]}
    if differ:
        ours = {k: ours[k] for k in differ}
        raise ConfigError("train.init_from", path, f"a checkpoint of the run's model; it has {differ} where the "
                                                   f"run has {ours} (set model / model_overrides to match)")
    model.load_state_dict(state["model"])
    ema.load_state_dict(state.get("ema", state["model"]))


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each transformer block in the backward pass instead of storing its activations."""
    from torch.utils.checkpoint import checkpoint as ckpt

    for blocks in model.levels:
        for block in blocks:
            block.forward = functools.partial(ckpt, block.forward, use_reentrant=False)


def ema_decay_at(step: int, decay: float, warmup: bool) -> float:
    """EMA decay for the update after ``step`` optimizer steps. Without warmup it is constant (DiT's
    protocol); with it, it ramps up so the average forgets the random init within a short run."""
    return min(decay, (1 + step) / (10 + step)) if warmup else decay


def warn_frozen_ema(tc: dict[str, Any]) -> None:
    """A constant decay of 0.9999 over a few hundred steps leaves the EMA, which sampling uses, at init."""
    init_share = tc["ema_decay"] ** tc["steps"]
    if not tc["ema_warmup"] and init_share > 0.5:
        warnings.warn(f"train.ema_decay={tc['ema_decay']} over train.steps={tc['steps']} leaves "
                      f"{init_share:.0%} of the random init in the EMA weights that sampling uses; "
                      f"set train.ema_warmup: true or a smaller ema_decay", stacklevel=2)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)


def autocast(device: torch.device, precision: str):
    enabled = device.type == "cuda" and precision == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


class Validator:
    """Loss on a held-out set with noise and t fixed once (same every call), labels kept."""

    def __init__(self, dataset, batch: int, seed: int, info: distributed.DistInfo, t_mean: float, t_std: float):
        self.dataset, self.batch, self.info = dataset, batch, info
        n = len(dataset)
        x, _ = dataset[0]
        g = torch.Generator().manual_seed(seed + 7919)
        self.noise = torch.randn((n, *x.shape), generator=g)
        self.t = flow.logit_normal_t(n, g, t_mean, t_std)
        self.indices = list(range(info.rank, n, info.world_size))

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, null_class: int, precision: str) -> float:
        dev = self.info.device
        total = torch.zeros(2, dtype=torch.float64, device=dev)  # sum of per-sample losses, count
        was_training = model.training
        model.eval()
        for start in range(0, len(self.indices), self.batch):
            rows = self.indices[start:start + self.batch]
            x = torch.stack([self.dataset[i][0] for i in rows]).to(dev)
            y = torch.tensor([self.dataset[i][1] for i in rows], device=dev)
            noise, t = self.noise[rows].to(dev), self.t[rows].to(dev)
            with autocast(dev, precision):
                pred = model(flow.interpolate(x, noise, t), t, y)[:, : x.shape[1]]
            per_sample = ((pred.float() - (noise - x)) ** 2).flatten(1).mean(1)
            total += torch.stack([per_sample.sum().double(), torch.tensor(len(rows), dtype=torch.float64, device=dev)])
        model.train(was_training)
        if self.info.distributed:
            torch.distributed.all_reduce(total)
        return float(total[0] / total[1])


# ---- metrics ----------------------------------------------------------------------------------------------
class MetricsLog:
    """metrics.csv (rank 0); on resume, rows past the resumed step are dropped. TensorBoard when installed."""

    def __init__(self, run_dir: Path, resumed_step: int, enabled: bool):
        self.path, self.enabled, self.tb = run_dir / "metrics.csv", enabled, None
        if not enabled:
            return
        rows = []
        if self.path.is_file() and resumed_step > 0:
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resumed_step]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        checkpoint.write_text_atomic(self.path, buf.getvalue())
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            self.tb = None

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, METRIC_FIELDS).writerow({k: row.get(k, "") for k in METRIC_FIELDS})
        if self.tb is not None:
            for key in ("loss", "lr", "images_per_s", "val_loss"):
                if row.get(key) not in (None, ""):
                    self.tb.add_scalar(f"train/{key}", row[key], row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class _Progress:
    """A rich progress bar (loss, images/s, ETA) on rank 0; plain log lines when not on a terminal."""

    def __init__(self, enabled: bool, total: int, done: int):
        self.bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[ips]} img/s"),
                            TextColumn("ETA"), TimeRemainingColumn(), console=self.console)
        self.task = self.bar.add_task("train", total=total, completed=done, loss="-", ips="-")
        self.bar.start()

    def update(self, step: int, loss: float | None = None, ips: float | None = None, log: bool = False) -> None:
        if self.bar is None:
            return
        fields = {}
        if loss is not None:
            fields = {"loss": f"{loss:.4f}", "ips": f"{ips:.1f}"}
        self.bar.update(self.task, completed=step, **fields)
        if log and not self.console.is_terminal:
            self.console.print(f"step {step} loss {loss:.4f} {ips:.1f} img/s", highlight=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# ---- the loop -------------------------------------------------------------------------------------------
def train(run_cfg: dict[str, Any], out_dir: str | Path,
          on_validation: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train (or resume) the run described by ``run_cfg`` into ``out_dir``; returns the summary dict."""
    run_cfg = validate_run_config(run_cfg)
    tc = run_cfg["train"]
    out = Path(out_dir)
    info = distributed.setup(tc["device"])
    try:
        return _train(run_cfg, tc, out, info, on_validation)
    finally:
        distributed.teardown()


def _train(run_cfg, tc, out: Path, info: distributed.DistInfo, on_validation) -> dict[str, Any]:
    if tc["threads"]:
        torch.set_num_threads(tc["threads"])
    if info.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tc["tf32"]
        torch.backends.cudnn.allow_tf32 = tc["tf32"]
    if tc["global_batch"] % info.world_size:
        raise ConfigError("train.global_batch", tc["global_batch"],
                          f"a multiple of the world size {info.world_size}")
    batch = tc["global_batch"] // info.world_size

    if info.is_main:
        warn_frozen_ema(tc)
    train_set, val_set = build_datasets(run_cfg["data"], tc["val_size"])
    dinfo = data_info(train_set, run_cfg["data"])
    mcfg = resolve_model_config(run_cfg, dinfo)
    if len(train_set) < tc["global_batch"]:
        raise ConfigError("train.global_batch", tc["global_batch"],
                          f"at most the training set size {len(train_set)}")

    torch.manual_seed(tc["seed"])  # identical initial weights on every rank
    model = build_model(mcfg).to(info.device)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tc["lr"],
                                  betas=tuple(tc["betas"]), weight_decay=tc["weight_decay"])
    torch.manual_seed(tc["seed"] + 1000 * info.rank + 1)  # per-rank stream for anything else random

    ckpt_dir = out / "checkpoints"
    last_path = ckpt_dir / "last.pt"
    step, epoch, batch_in_epoch, train_seconds, last_saved = 0, 0, 0, 0.0, None
    if tc["resume"] and last_path.is_file():
        state = checkpoint.load(last_path)  # on CPU: RNG states must stay CPU byte tensors
        saved_batch = state["run_config"]["train"]["global_batch"]
        if saved_batch != tc["global_batch"]:  # the data position is counted in batches
            raise ConfigError("train.global_batch", tc["global_batch"],
                              f"{saved_batch}, the value {last_path} was trained with (or a new --out)")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        train_seconds, last_saved = state.get("train_seconds", 0.0), step
        if len(state["rng"]) == info.world_size:
            checkpoint.set_rng_state(state["rng"][info.rank], info.device)
        del state
    elif tc["init_from"]:
        init_weights_from(tc["init_from"], model, ema, mcfg)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.write_text_atomic(out / "config.yaml", yaml.safe_dump(run_cfg, sort_keys=False))

    if tc["activation_checkpointing"]:
        enable_activation_checkpointing(model)
    net: torch.nn.Module = PackedForward(model) if tc["packing"] else model
    if info.distributed:
        # a rank's share of a schedule model's batch may lack a stage, leaving that stage's modules unused
        net = DDP(net, device_ids=[info.local_rank] if info.device.type == "cuda" else None,
                  find_unused_parameters=bool(mcfg.time_patch_sizes))
    if tc["compile"]:
        net = torch.compile(net)

    sampler = DistributedSampler(train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=tc["seed"], drop_last=True)
    validator = (Validator(val_set, batch, tc["seed"], info, tc["t_mean"], tc["t_std"])
                 if tc["val_every"] else None)
    metrics = MetricsLog(out, step, info.is_main)
    bar = _Progress(tc["progress"] and info.is_main, tc["steps"], step)
    null_class = mcfg.num_classes
    shape = (dinfo["channels"], dinfo["size"], dinfo["size"])
    times = stage_times(mcfg, tc["stage_proportions"])

    def save(kind: str) -> None:
        nonlocal last_saved
        rngs = distributed.all_gather_objects(checkpoint.rng_state(info.device))
        if info.is_main:
            state = {"format": checkpoint.FORMAT, "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                     "train_seconds": train_seconds, "model": model.state_dict(), "ema": ema.state_dict(),
                     "optimizer": optimizer.state_dict(), "rng": rngs, "run_config": run_cfg,
                     "model_config": mcfg.to_dict(), "data_info": dinfo, "world_size": info.world_size}
            checkpoint.save_atomic(state, last_path)
            if kind == "keep":
                checkpoint.save_atomic(state, ckpt_dir / f"step_{step:07d}.pt")
        distributed.barrier()
        last_saved = step

    window_loss, window_n, window_start = 0.0, 0, time.perf_counter()
    last_loss, last_val = None, None
    session_start = time.perf_counter()
    seconds_before = train_seconds
    net.train()
    try:
        while step < tc["steps"]:
            batches = epoch_batches(sampler, epoch, batch, batch_in_epoch)
            loader = DataLoader(train_set, batch_sampler=batches, num_workers=tc["num_workers"],
                                pin_memory=info.device.type == "cuda")
            for x, y in loader:
                x, y = x.to(info.device, non_blocking=True), y.to(info.device, non_blocking=True)
                draws = flow.draw(shape, tc["global_batch"], info.rank, info.world_size, tc["seed"], step,
                                  tc["label_drop"], tc["t_mean"], tc["t_std"], info.device, times)
                with autocast(info.device, tc["precision"]):
                    loss = flow.flow_loss(net, x, y, draws, null_class)
                loss_value = float(distributed.all_mean(loss.detach()))
                if not math.isfinite(loss_value):
                    where = (f"the last good checkpoint {last_path} (step {last_saved}) is kept"
                             if last_saved is not None else "no checkpoint had been written yet")
                    raise TrainingDiverged(
                        f"loss is {loss_value} at step {step + 1}; training stopped and {where}. "
                        f"Lower train.lr or set train.grad_clip, and check the data.")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if tc["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
                optimizer.step()
                update_ema(ema, model, ema_decay_at(step, tc["ema_decay"], tc["ema_warmup"]))
                step += 1
                batch_in_epoch += 1
                train_seconds = seconds_before + time.perf_counter() - session_start
                window_loss += loss_value
                window_n += 1

                row = None
                if step % tc["log_every"] == 0 or step == tc["steps"]:
                    elapsed = time.perf_counter() - window_start
                    last_loss = window_loss / window_n
                    row = {"step": step, "epoch": epoch, "loss": last_loss, "lr": tc["lr"],
                           "images_per_s": window_n * tc["global_batch"] / max(elapsed, 1e-9),
                           "wall_s": round(train_seconds, 3)}
                    bar.update(step, last_loss, row["images_per_s"], log=True)
                    window_loss, window_n, window_start = 0.0, 0, time.perf_counter()
                else:
                    bar.update(step)
                if validator is not None and (step % tc["val_every"] == 0 or step == tc["steps"]):
                    last_val = validator(model, null_class, tc["precision"])
                    row = row or {"step": step, "epoch": epoch, "lr": tc["lr"], "wall_s": round(train_seconds, 3)}
                    row["val_loss"] = last_val
                if row is not None:
                    metrics.write(row)
                    if on_validation is not None and "val_loss" in row:
                        on_validation(step, row["val_loss"])
                timed_out = tc["time_limit_s"] is not None and train_seconds >= tc["time_limit_s"]
                if tc["keep_every"] and step % tc["keep_every"] == 0:
                    save("keep")
                elif step % tc["ckpt_every"] == 0 or step == tc["steps"] or timed_out:
                    save("last")
                if step >= tc["steps"] or timed_out:
                    break
            else:
                epoch, batch_in_epoch = epoch + 1, 0
                continue
            break
    finally:
        bar.close()
        metrics.close()

    summary = {"final_step": step, "images_seen": step * tc["global_batch"], "train_seconds": round(train_seconds, 3),
               "final_loss": last_loss, "last_val_loss": last_val, "world_size": info.world_size,
               "device": str(info.device), "epoch": epoch, "model": run_cfg["model"], "model_config": mcfg.to_dict(),
               "params": sum(p.numel() for p in model.parameters()), "stopped_by_time_limit": step < tc["steps"]}
    if info.is_main:
        checkpoint.write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary


__all__ = ["TrainingDiverged", "build_datasets", "load_run_config", "resolve_model_config", "train",
           "validate_run_config"]
