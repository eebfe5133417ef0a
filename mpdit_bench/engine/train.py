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
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler

from mpdit_bench import checkpoint
from mpdit_bench.engine import distributed, flow
from mpdit_bench import ppflow
from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench.counting import param_count
from mpdit_bench.files import write_text_atomic
from mpdit_bench.progress import ProgressBar
from mpdit_bench.models import build_model
from mpdit_bench.engine.run_config import (ResumeError, load_run_config, resolve_model_config, resume_changes,
                                           validate_run_config)
from mpdit_bench.engine.torch_settings import TorchSettings, applied

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

    from mpdit_bench.data.latents import LatentStore, check_store_dtype, read_stats

    read_stats(data_cfg["path"])  # a missing or incomplete store is named before anything is read from it
    check_store_dtype(data_cfg["path"], data_cfg["store_dtype"])
    num = len(np.load(Path(data_cfg["path"]) / "labels.npy", mmap_mode="r"))
    val_size = min(val_size, max(num // 10, 1))
    train_idx = np.arange(num - val_size)[: data_cfg["limit"]]
    norm = data_cfg["normalization"]
    return (LatentStore(data_cfg["path"], train_idx, norm, data_cfg["hflip"]),
            LatentStore(data_cfg["path"], np.arange(num - val_size, num), norm))


def data_info(dataset: torch.utils.data.Dataset, data_cfg: dict[str, Any]) -> dict[str, Any]:
    """Geometry read from the data itself, plus what sampling needs to turn outputs into images."""
    x, _ = dataset[0]
    info = {"name": data_cfg["name"], "channels": int(x.shape[0]), "size": int(x.shape[-1]),
            "num_classes": int(dataset.num_classes)}
    if data_cfg["name"] == "latents":
        info.update(path=str(data_cfg["path"]), latent_mean=dataset.mean_values,
                    latent_std=dataset.std_values,
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


def init_weights_from(tc: dict[str, Any], model: torch.nn.Module, ema: torch.nn.Module, mcfg: ModelConfig,
                      run_dir: Path) -> dict[str, Any]:
    """Model and EMA weights of ``train.init_from`` (imported and converted as ``imports.start`` says);
    a checkpoint without "ema" starts the EMA at the model weights. Returns the starting checkpoint."""
    from mpdit_bench.imports.start import starting_point

    state = starting_point(tc, mcfg, run_dir)
    model.load_state_dict(state["model"])
    ema.load_state_dict(state.get("ema", state["model"]))
    return state


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """``load_state_dict`` that refuses weights of another architecture in a few lines, not torch's hundred."""
    missing, unexpected, resized = checkpoint.weight_mismatch(
        weights, {k: tuple(v.shape) for k, v in model.state_dict().items()})
    if missing or unexpected or resized:
        parts = [f"{len(items)} {what}, e.g. {', '.join(items[:3])}"
                 for what, items in (("missing", missing), ("unexpected", unexpected),
                                     ("of another shape (checkpoint vs model)", resized)) if items]
        raise ConfigError("model", "this run's architecture",
                          f"the architecture {path} was trained with: its weights do not fit ({'; '.join(parts)})")
    model.load_state_dict(weights)


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
        start = f"the weights of {tc['init_from']}" if tc["init_from"] else "the random init"
        warnings.warn(f"train.ema_decay={tc['ema_decay']} over train.steps={tc['steps']} leaves "
                      f"{init_share:.0%} of {start} in the EMA weights that sampling uses; "
                      f"set train.ema_warmup: true or a smaller ema_decay", stacklevel=2)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)


def uses_bf16(device: torch.device, precision: str) -> bool:
    """``precision: bf16`` autocasts on a GPU only; a CPU run stays in fp32."""
    return device.type == "cuda" and precision == "bf16"


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(device, precision))


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
    def __call__(self, model: torch.nn.Module, precision: str) -> float:
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
    """metrics.csv (rank 0); on resume, rows past the resumed step are dropped. With ``tensorboard`` the
    same rows also go to TensorBoard event files in RUN/tensorboard (events past the resumed step purged)."""

    def __init__(self, run_dir: Path, resumed_step: int, enabled: bool, tensorboard: bool = False):
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
        write_text_atomic(self.path, buf.getvalue())
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"),
                                    purge_step=resumed_step + 1 if resumed_step else None)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, METRIC_FIELDS).writerow({k: row.get(k, "") for k in METRIC_FIELDS})
        if self.tb is not None:
            for key in METRIC_FIELDS[1:]:
                if row.get(key) not in (None, ""):
                    self.tb.add_scalar(f"train/{key}", row[key], row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def training_settings(tc: dict[str, Any]) -> TorchSettings:
    """torch's process-wide settings a run's ``train`` section asks for: CPU threads and TF32."""
    return TorchSettings(threads=tc["threads"], matmul_tf32=tc["tf32"], cudnn_tf32=tc["tf32"])


# ---- the loop -------------------------------------------------------------------------------------------
@dataclass
class Position:
    """Where a run is: what a checkpoint saves and a resume restores."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    train_seconds: float = 0.0


class Trainer:
    """One run: build from a validated run config, then ``fit()`` = resume, step through the batches,
    validate and checkpoint on schedule. ``step(x, y)`` alone is the engine's training step (benchmarks).
    The Trainer changes no process-wide setting: ``train`` applies ``training_settings`` around the whole run,
    construction included; a benchmark calling ``step`` applies ``trainer.torch_settings`` itself."""

    def __init__(self, run_cfg: dict[str, Any], out_dir: str | Path, info: distributed.DistInfo,
                 on_validation: Callable[[int, float], None] | None = None):
        self.run_cfg, self.tc, self.info = run_cfg, run_cfg["train"], info
        self.out, self.on_validation = Path(out_dir), on_validation
        self.last_path = self.out / "checkpoints" / "last.pt"
        tc = self.tc
        self.torch_settings = training_settings(tc)
        if tc["global_batch"] % info.world_size:
            raise ConfigError("train.global_batch", tc["global_batch"],
                              f"a multiple of the world size {info.world_size}")
        self.batch = tc["global_batch"] // info.world_size
        if info.is_main:
            warn_frozen_ema(tc)
        self.train_set, self.val_set = build_datasets(run_cfg["data"], tc["val_size"])
        self.data_info = data_info(self.train_set, run_cfg["data"])
        self.mcfg = resolve_model_config(run_cfg, self.data_info)
        if len(self.train_set) < tc["global_batch"]:
            raise ConfigError("train.global_batch", tc["global_batch"],
                              f"at most the training set size {len(self.train_set)}")
        self._build_model()
        self.net = self.model  # what the loss calls; ``wrap()`` packs, distributes, compiles it
        self.position, self.last_saved, self.last_val = Position(), None, None
        self.times = stage_times(self.mcfg, tc["stage_proportions"])
        self.shape = (self.data_info["channels"], self.data_info["size"], self.data_info["size"])

    def _build_model(self) -> None:
        tc, info = self.tc, self.info
        torch.manual_seed(tc["seed"])  # identical initial weights on every rank
        self.model = build_model(self.mcfg).to(info.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=tc["lr"],
                                           betas=tuple(tc["betas"]), weight_decay=tc["weight_decay"])
        torch.manual_seed(tc["seed"] + 1000 * info.rank + 1)  # per-rank stream for anything else random

    def wrap(self) -> torch.nn.Module:
        """The module the loss calls: packed, DDP and compiled as asked (the weights stay ``self.model``)."""
        tc, info = self.tc, self.info
        if tc["activation_checkpointing"]:
            enable_activation_checkpointing(self.model)
        net: torch.nn.Module = PackedForward(self.model) if tc["packing"] else self.model
        if info.distributed:
            # a rank's share of a schedule model's batch may lack a stage, leaving that stage's modules unused
            net = DDP(net, device_ids=[info.local_rank] if info.device.type == "cuda" else None,
                      find_unused_parameters=bool(self.mcfg.time_patch_sizes))
        return torch.compile(net) if tc["compile"] else net

    def resume(self) -> None:
        """Continue from RUN/checkpoints/last.pt when there is one, else start from ``train.init_from``."""
        tc = self.tc
        if tc["resume"] and self.last_path.is_file():
            state = checkpoint.load(self.last_path)  # on CPU: RNG states must stay CPU byte tensors
            changes = resume_changes(state["run_config"], state.get("model_config"), self.run_cfg,
                                     self.mcfg.to_dict())
            if changes:
                raise ResumeError(str(self.last_path), changes)
            load_weights(self.model, state["model"], self.last_path)
            load_weights(self.ema, state["ema"], self.last_path)
            self.optimizer.load_state_dict(state["optimizer"])
            self.position = Position(state["step"], state["epoch"], state["batch_in_epoch"],
                                     state.get("train_seconds", 0.0))
            self.last_saved = self.position.step
            if len(state["rng"]) == self.info.world_size:
                checkpoint.set_rng_state(state["rng"][self.info.rank], self.info.device)
            if self.info.is_main:  # a requeued or resubmitted job's log says where it picked up
                print(f"resumed from {self.last_path} at step {self.position.step}", flush=True)
        elif tc["init_from"]:
            start = init_weights_from(tc, self.model, self.ema, self.mcfg, self.out)
            if self.info.is_main:
                how = [f"imported from {tc['init_source']}'s format"] if tc["init_source"] else []
                if "converted_from" in start:
                    how.append(f"converted to {len(self.mcfg.time_patch_sizes)} stages (level embedding "
                               f"{self.mcfg.level_embed_init})")
                print(f"starting from {tc['init_from']}{' (' + ', '.join(how) + ')' if how else ''}", flush=True)
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            recorded = {**self.run_cfg, "model_config": self.mcfg.to_dict()}  # the resolved config travels with the run
            write_text_atomic(self.out / "config.yaml", yaml.safe_dump(recorded, sort_keys=False))

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's batches on the device, epoch after epoch, from the saved position on."""
        sampler = DistributedSampler(self.train_set, num_replicas=self.info.world_size, rank=self.info.rank,
                                     shuffle=True, seed=self.tc["seed"], drop_last=True)
        pos, dev = self.position, self.info.device
        while True:
            loader = DataLoader(self.train_set, num_workers=self.tc["num_workers"], pin_memory=dev.type == "cuda",
                                batch_sampler=epoch_batches(sampler, pos.epoch, self.batch, pos.batch_in_epoch))
            for x, y in loader:
                yield x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimizer step and EMA update on this rank's batch; returns the loss averaged over ranks.
        The draws are made for the global batch (this batch x world size) and this rank takes its rows."""
        tc, info, pos = self.tc, self.info, self.position
        draws = flow.draw(self.shape, len(x) * info.world_size, info.rank, info.world_size, tc["seed"], pos.step,
                          tc["label_drop"], tc["t_mean"], tc["t_std"], info.device, self.times)
        with autocast(info.device, tc["precision"]):
            loss = flow.flow_loss(self.net, x, y, draws, self.mcfg.num_classes)
        loss_value = float(distributed.all_mean(loss.detach()))
        if not math.isfinite(loss_value):
            where = (f"the last good checkpoint {self.last_path} (step {self.last_saved}) is kept"
                     if self.last_saved is not None else "no checkpoint had been written yet")
            raise TrainingDiverged(f"loss is {loss_value} at step {pos.step + 1}; training stopped and {where}. "
                                   f"Lower train.lr or set train.grad_clip, and check the data.")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc["grad_clip"])
        self.optimizer.step()
        update_ema(self.ema, self.model, ema_decay_at(pos.step, tc["ema_decay"], tc["ema_warmup"]))
        pos.step += 1
        pos.batch_in_epoch += 1
        return loss_value

    def validate(self, validator: "Validator") -> float:
        return validator(self.model, self.tc["precision"])

    def checkpoint(self, keep: bool = False) -> None:
        """last.pt (and step_N.pt when ``keep``), written by global rank 0 with every rank's RNG state."""
        pos, info = self.position, self.info
        rngs = distributed.all_gather_objects(checkpoint.rng_state(info.device))
        if info.is_main:
            state = {"format": checkpoint.FORMAT, "step": pos.step, "epoch": pos.epoch,
                     "batch_in_epoch": pos.batch_in_epoch, "train_seconds": pos.train_seconds,
                     "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                     "optimizer": self.optimizer.state_dict(), "rng": rngs, "run_config": self.run_cfg,
                     "model_config": self.mcfg.to_dict(), "data_info": self.data_info,
                     "world_size": info.world_size}
            checkpoint.save_atomic(state, self.last_path)
            if keep:
                checkpoint.save_atomic(state, self.last_path.with_name(f"step_{pos.step:07d}.pt"))
        distributed.barrier()
        self.last_saved = pos.step

    def describe(self) -> str:
        """The resolved run in a few lines: model, size, data, batch, steps, learning rate, where it goes."""
        from mpdit_bench.counting import analytic_counts

        tc, m, d = self.tc, self.mcfg, self.data_info
        schedule = f", patch schedule over time {m.time_patch_sizes}" if m.time_patch_sizes else ""
        return (f"model {self.run_cfg['model']}: patches {m.patch_sizes} depths {m.depths} D={m.hidden_size} "
                f"m={m.class_tokens}{schedule}; {param_count(self.model) / 1e6:.2f} M parameters, "
                f"{analytic_counts(m)['gflops']:.3f} GFLOPs per image (true count)\n"
                f"data {d['name']}: {len(self.train_set)} training items of {d['channels']}x{d['size']}x{d['size']}, "
                f"{d['num_classes']} classes\n"
                f"train: global batch {tc['global_batch']} ({self.batch} per process x {self.info.world_size}), "
                f"steps {self.position.step} -> {tc['steps']}, lr {tc['lr']:g}, seed {tc['seed']}, "
                f"{'bf16 autocast' if uses_bf16(self.info.device, tc['precision']) else 'fp32'} on {self.info.device}"
                + (f", validation every {tc['val_every']} steps" if tc["val_every"] else "") + f" -> {self.out}")

    def fit(self) -> dict[str, Any]:
        """Resume, train to ``train.steps`` (or the time limit), return the summary."""
        self.resume()
        tc, pos = self.tc, self.position
        if self.info.is_main:
            print(self.describe(), flush=True)
        self.net = self.wrap()
        validator = (Validator(self.val_set, self.batch, tc["seed"], self.info, tc["t_mean"], tc["t_std"])
                     if tc["val_every"] else None)
        metrics = MetricsLog(self.out, pos.step, self.info.is_main, self.tc["tensorboard"])
        bar = ProgressBar("train", tc["steps"], enabled=tc["progress"] and self.info.is_main, done=pos.step,
                          fields={"loss": "loss {}", "ips": "{} img/s"})
        window = LossWindow()
        seconds_before, session_start = pos.train_seconds, time.perf_counter()
        self.net.train()
        try:
            for x, y in self.batches() if pos.step < tc["steps"] else ():
                window.add(self.step(x, y))
                pos.train_seconds = seconds_before + time.perf_counter() - session_start
                row = self._log_row(window, bar)
                if validator is not None and (pos.step % tc["val_every"] == 0 or pos.step == tc["steps"]):
                    row = row or self._row()
                    row["val_loss"] = self.last_val = self.validate(validator)
                    if self.info.is_main:
                        print(f"step {pos.step} validation loss {self.last_val:.4f}", flush=True)
                if row is not None:
                    metrics.write(row)
                    if self.on_validation is not None and "val_loss" in row:
                        self.on_validation(pos.step, row["val_loss"])
                timed_out = tc["time_limit_s"] is not None and pos.train_seconds >= tc["time_limit_s"]
                if (tc["keep_every"] and pos.step % tc["keep_every"] == 0) or pos.step in (tc["keep_steps"] or ()):
                    self.checkpoint(keep=True)
                elif pos.step % tc["ckpt_every"] == 0 or pos.step == tc["steps"] or timed_out:
                    self.checkpoint()
                if pos.step >= tc["steps"] or timed_out:
                    break
        finally:
            bar.close()
            metrics.close()
        return self._summary(window.last)

    def _row(self) -> dict[str, Any]:
        pos = self.position
        return {"step": pos.step, "epoch": pos.epoch, "lr": self.tc["lr"], "wall_s": round(pos.train_seconds, 3)}

    def _log_row(self, window: "LossWindow", bar: ProgressBar) -> dict[str, Any] | None:
        """A metrics row (mean loss, images/s since the last row) every ``log_every`` steps and at the end."""
        step = self.position.step
        if step % self.tc["log_every"] and step != self.tc["steps"]:
            bar.update(step)
            return None
        loss, steps, seconds = window.close()
        row = {**self._row(), "loss": loss, "images_per_s": steps * self.tc["global_batch"] / max(seconds, 1e-9)}
        ips = row["images_per_s"]
        bar.update(step, loss=f"{loss:.4f}", ips=f"{ips:.1f}")
        bar.log(f"step {step} loss {loss:.4f} {ips:.1f} img/s")
        return {k: row[k] for k in ("step", "epoch", "loss", "lr", "images_per_s", "wall_s")}

    def _summary(self, last_loss: float | None) -> dict[str, Any]:
        pos, tc = self.position, self.tc
        summary = {"final_step": pos.step, "images_seen": pos.step * tc["global_batch"],
                   "train_seconds": round(pos.train_seconds, 3), "final_loss": last_loss,
                   "last_val_loss": self.last_val, "world_size": self.info.world_size,
                   "device": str(self.info.device), "epoch": pos.epoch, "model": self.run_cfg["model"],
                   "model_config": self.mcfg.to_dict(), "params": param_count(self.model),
                   "stopped_by_time_limit": pos.step < tc["steps"]}
        if self.info.is_main:
            write_text_atomic(self.out / "summary.json", json.dumps(summary, indent=2))
        return summary


class LossWindow:
    """Mean loss and throughput over the steps since the last metrics row."""

    def __init__(self):
        self.total, self.steps, self.start, self.last = 0.0, 0, time.perf_counter(), None

    def add(self, loss: float) -> None:
        self.total += loss
        self.steps += 1

    def close(self) -> tuple[float, int, float]:
        """(mean loss, steps, seconds) of the window, then start a new one."""
        mean, steps, seconds = self.total / self.steps, self.steps, time.perf_counter() - self.start
        self.total, self.steps, self.start, self.last = 0.0, 0, time.perf_counter(), mean
        return mean, steps, seconds


def train(run_cfg: dict[str, Any], out_dir: str | Path,
          on_validation: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train (or resume) the run described by ``run_cfg`` into ``out_dir``; returns the summary dict."""
    run_cfg = validate_run_config(run_cfg)
    if run_cfg["train"]["steps"] == 0:  # nothing to train: the run's checkpoint is train.init_from
        from mpdit_bench.imports.start import start_without_training
        from mpdit_bench.models import model_config

        mcfg = (ModelConfig.from_dict(run_cfg["model_config"]) if run_cfg.get("model_config") is not None
                else model_config(run_cfg["model"], **run_cfg["model_overrides"]))
        return start_without_training(run_cfg, mcfg, out_dir)
    info = distributed.setup(run_cfg["train"]["device"], "train.device")
    try:
        with applied(training_settings(run_cfg["train"])):
            return Trainer(run_cfg, out_dir, info, on_validation).fit()
    finally:
        distributed.teardown()


__all__ = ["Position", "Trainer", "TrainingDiverged", "build_datasets", "load_run_config", "resolve_model_config",
           "train", "training_settings", "validate_run_config"]
