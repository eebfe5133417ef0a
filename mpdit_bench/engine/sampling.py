"""Sampling from t = 1 (noise) to t = 0 (data): Euler, Heun, torchdiffeq's heun2 and dopri5 ODE, two SDEs, CFG.

The model predicts the velocity v = n - z of the interpolant z_t = (1 - t) z + t n, so the ODE is
dx/dt = v(x, t), integrated from t = 1 down to t = 0 on a uniform grid. ``grid: steps`` (the suite's
default) takes ``steps`` intervals (steps + 1 points); ``grid: points`` takes ``steps`` points, as the MPDiT
authors' ``linspace(1, 0, steps)``: their "250 steps" are 249 Euler steps.

Samplers: ``euler``, ``heun``; ``heun2`` (torchdiffeq's fixed-grid Heun over the same grid: PPFlow's ODE
default, over 250 points); ``sde`` (the suite's Euler-Maruyama SDE, diffusion g^2 = w t: the shape of SiT's
"sigma" form);
``sde_sbdm`` (the MPDiT authors' SBDM SDE, see `sbdm_sde`); ``dopri5`` (torchdiffeq's adaptive
Dormand-Prince, as SiT's ODE rows, ``atol`` / ``rtol``; ``steps`` is unused). dopri5 picks its
steps for a whole batch, so its samples depend on the batch composition within the tolerances.

Classifier-free guidance: v = v(x, t, null) + w (v(x, t, y) - v(x, t, null)) on all channels (or on the
first ``cfg_channels``, the others conditional, as SiT and PPFlow guide 3 of 4 latent channels), the
conditional and null halves in one forward pass; with ``guidance_interval = (t_lo, t_hi)`` it is
applied only for t_lo <= t <= t_hi (elsewhere the conditional velocity alone). At w = 1 the null pass
is skipped, so the result is exactly the conditional model's. A model with a patch schedule (PPFlow) may
take one scale per stage, coarse (noisy) first: w(t) is the scale of the stage t falls in
(``ppflow.guidance_scale_at``; t exactly on a boundary b belongs to the coarser stage, as in the model).

Determinism: sample i draws its label (for ``labels="random"``), its starting noise and its SDE noise
from its own generator seeded by (seed, i). The output does not depend on the batch size or the
number of ranks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mpdit_bench import checkpoint
from mpdit_bench.engine import distributed
from mpdit_bench import ppflow
from mpdit_bench.files import atomic_path, save_npz_atomic
from mpdit_bench.progress import ProgressBar
from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench.engine.torch_settings import TorchSettings, applied
from mpdit_bench.validation import Key, check_section, is_bool, is_int, is_num, optional

SAMPLERS = ("euler", "heun", "heun2", "sde", "sde_sbdm", "dopri5")
GRIDS = ("steps", "points")
SBDM_T_START, SBDM_LAST_STEP = 0.96, 0.04  # the SBDM grid runs 0.96 -> 0.04, then one deterministic step to 0
SETTINGS = TorchSettings(matmul_tf32=True, cudnn_tf32=True)  # TF32 on CUDA; restored when sampling ends


def _cfg_scale_ok(w: Any) -> bool:
    scales = w if isinstance(w, (list, tuple)) else [w]
    return bool(scales) and all(is_num(s) and s >= 0 for s in scales)


SAMPLE_KEYS: dict[str, Key] = {
    "sampler": Key("euler", lambda v: v in SAMPLERS, ", ".join(SAMPLERS)),
    "steps": Key(50, lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    "grid": Key("steps", lambda v: v in GRIDS, "steps (steps intervals, the suite's) or points (steps points, "
                                              "steps - 1 intervals, as the MPDiT authors' linspace(1, 0, steps))"),
    "atol": Key(1e-6, lambda v: is_num(v) and v > 0, "a number > 0 (dopri5 absolute tolerance; SiT's 1e-6)"),
    "rtol": Key(1e-3, lambda v: is_num(v) and v > 0, "a number > 0 (dopri5 relative tolerance; SiT's 1e-3)"),
    "cfg_scale": Key(1.0, _cfg_scale_ok, "a number >= 0 (1 = no guidance), or a list of them, one per stage "
                                         "of a patch schedule, coarse first"),
    "cfg_channels": Key(None, optional(lambda v: is_int(v) and v >= 1),
                        "null (guide every channel, as MPDiT) or the number of leading channels guided, the others "
                        "conditional (3 as SiT and PPFlow)"),
    "guidance_interval": Key(None, optional(lambda v: isinstance(v, (list, tuple)) and len(v) == 2
                                            and all(is_num(t) for t in v) and 0 <= v[0] <= v[1] <= 1),
                             "null or [t_lo, t_hi] with 0 <= t_lo <= t_hi <= 1"),
    "seed": Key(0, is_int, "an integer"),
    "batch_size": Key(64, lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    "labels": Key("random", lambda v: v in ("random", "balanced") or (is_int(v) and v >= 0),
                  "random (uniform, as ADM), balanced (i mod C) or a class index"),
    "diffusion_norm": Key(1.0, lambda v: is_num(v) and v >= 0, "a number >= 0 (SDE noise scale, sde and sde_sbdm)"),
    "use_ema": Key(True, is_bool, "true or false (sample from the EMA weights)"),
}
OPTION_DEFAULTS: dict[str, Any] = {key: spec.default for key, spec in SAMPLE_KEYS.items()}

Velocity = Callable[[torch.Tensor, float, torch.Tensor], torch.Tensor]


def check_options(options: dict[str, Any], source: str = "sampling options") -> dict[str, Any]:
    """Defaults filled (a None value means the default), every value checked; raises ConfigError naming
    the key and what is allowed."""
    checked = check_section({k: v for k, v in options.items() if v is not None}, SAMPLE_KEYS, source)
    if checked["grid"] == "points" and checked["steps"] < 2:
        raise ConfigError("steps", checked["steps"], "an integer >= 2 with grid: points (steps - 1 intervals)", source)
    return checked


def check_cfg_scale(cfg_scale: float | Sequence[float], cfg: ModelConfig,
                    source: str = "sampling options") -> None:
    """A list of scales must have one entry per stage of the model's patch schedule."""
    if not isinstance(cfg_scale, (list, tuple)):
        return
    stages = len(cfg.time_patch_sizes)
    if len(cfg_scale) != max(stages, 1):
        allowed = (f"one number, or {stages} numbers (one per stage of {list(cfg.time_patch_sizes)}, coarse first)"
                   if stages else "one number (the model has no patch schedule)")
        raise ConfigError("cfg_scale", list(cfg_scale), allowed, source)


_FLAG_NUMBERS = {"cfg_scale": ("--cfg-scale", "a number, or numbers one per stage, e.g. 1.0,3.0"),
                 "guidance_interval": ("--guidance-interval", "t_lo,t_hi, e.g. 0.1,0.9")}


def parse_sample_options(options: dict[str, Any]) -> dict[str, Any]:
    """Sampling options as `sample_checkpoint` takes them, from the `sample` command's flag text or from a
    run's YAML values: ``cfg_scale`` "3" or "1.0,3.0" (one per stage) and ``guidance_interval`` "t_lo,t_hi"
    become numbers (a one-element ``cfg_scale`` list is its number); ``labels`` "7" is the class index 7.
    Other keys pass through. Text that is not numbers raises ConfigError naming the flag."""
    out = dict(options)
    for key, (flag, allowed) in _FLAG_NUMBERS.items():
        value = out.get(key)
        if isinstance(value, str):
            try:
                out[key] = [float(v) for v in value.split(",")]
            except ValueError:
                raise ConfigError(flag, value, allowed) from None
    scale = out.get("cfg_scale")
    if isinstance(scale, (list, tuple)) and len(scale) == 1:
        out["cfg_scale"] = scale[0]
    if isinstance(out.get("labels"), str) and out["labels"].isdigit():
        out["labels"] = int(out["labels"])
    return out


# ---- the model as a velocity field -------------------------------------------------------------------
def guided_velocity(model: torch.nn.Module, channels: int, null_class: int,
                    cfg_scale: float | Sequence[float] = 1.0, interval: Sequence[float] | None = None,
                    guided_channels: int | None = None) -> Velocity:
    """v(x, t, y) with classifier-free guidance; t is a Python float shared by the batch.

    ``cfg_scale``: one number, or one per stage of the model's patch schedule (coarse first).
    ``guided_channels``: guide only the first k channels, the rest stay conditional (None: all)."""
    scales = [float(w) for w in cfg_scale] if isinstance(cfg_scale, (list, tuple)) else [float(cfg_scale)]

    def velocity(x: torch.Tensor, t: float, y: torch.Tensor) -> torch.Tensor:
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.float32)
        in_interval = interval is None or interval[0] <= t <= interval[1]
        if len(scales) == 1:
            w = scales[0]
        else:  # the stage of t as the model sees it (float32), looked up on the CPU: no device sync per step
            w = float(ppflow.guidance_scale_at(torch.tensor([t], dtype=torch.float32), scales, model))
        if w == 1.0 or not in_interval:
            return model(x, tt, y)[:, :channels]
        null = torch.full_like(y, null_class)
        out = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, null]))[:, :channels]  # (2B, C, H, W)
        cond, uncond = out.chunk(2)
        k = channels if guided_channels is None else guided_channels
        return torch.cat([uncond[:, :k] + w * (cond[:, :k] - uncond[:, :k]), cond[:, k:]], dim=1)

    return velocity


# ---- integrators ---------------------------------------------------------------------------------------
def time_grid(steps: int, grid: str = "steps", start: float = 1.0, end: float = 0.0) -> list[float]:
    """Uniform times from ``start`` down to ``end``: ``steps`` intervals, or ``steps`` points (grid "points")."""
    points = steps if grid == "points" else steps + 1
    return torch.linspace(start, end, points, dtype=torch.float64).tolist()


def euler(v: Velocity, x: torch.Tensor, y: torch.Tensor, steps: int, grid: str = "steps", **_: Any) -> torch.Tensor:
    ts = time_grid(steps, grid)
    for t, t_next in zip(ts[:-1], ts[1:]):
        x = x + (t_next - t) * v(x, t, y)
    return x


def heun(v: Velocity, x: torch.Tensor, y: torch.Tensor, steps: int, grid: str = "steps", **_: Any) -> torch.Tensor:
    """Heun's second-order method (trapezoidal corrector on every interval)."""
    ts = time_grid(steps, grid)
    for t, t_next in zip(ts[:-1], ts[1:]):
        d = v(x, t, y)
        x_pred = x + (t_next - t) * d
        x = x + (t_next - t) * 0.5 * (d + v(x_pred, t_next, y))
    return x


def _noise_like(x: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """xi ~ N(0, I) of x's shape, row i from sample i's generator."""
    return torch.stack([torch.randn(x.shape[1:], generator=g) for g in generators]).to(x.device)


def euler_maruyama(v: Velocity, x: torch.Tensor, y: torch.Tensor, steps: int,
                   generators: Sequence[torch.Generator] = (), diffusion_norm: float = 1.0, grid: str = "steps",
                   **_: Any) -> torch.Tensor:
    """The suite's reverse-time SDE with the ODE's marginals, in tau = 1 - t with step h = t - t_next > 0.

    For z_t = (1 - t) z + t n the score is s(x, t) = -E[n | x_t = x] / t with E[n | x] = x + (1 - t) v.
    With diffusion g(t)^2 = w t (w = ``diffusion_norm``; SiT's "sigma" form D = n sigma_t = n t enters as
    noise sqrt(2 D dt), so its norm n is w = 2 n here, and its last step differs):

        drift (in tau):  -v + (g^2 / 2) s = -v - (w / 2) (x + (1 - t) v)
        diffusion:       g(t) = sqrt(w t)
        x <- x + h * drift + sqrt(w t h) * xi,  xi ~ N(0, I) from each sample's generator

    The last interval (ending at t = 0) is a plain Euler step without noise."""
    ts = time_grid(steps, grid)
    last = len(ts) - 2
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        vel = v(x, t, y)
        h = t - t_next
        if i == last:
            x = x - h * vel
            break
        drift = -vel - 0.5 * diffusion_norm * (x + (1 - t) * vel)
        x = x + h * drift + math.sqrt(diffusion_norm * t * h) * _noise_like(x, generators)
    return x


def sbdm_drift(v: Velocity, x: torch.Tensor, t: float, y: torch.Tensor, diffusion_norm: float
               ) -> tuple[torch.Tensor, float]:
    """(drift, w) of the SBDM SDE at suite time t (0 data, 1 noise), for dt < 0.

    SiT's SBDM diffusion is w = (1 - s) / s at its time s (0 noise, 1 data); at the suite's t = 1 - s it is
    w(t) = t / (1 - t), scaled by ``diffusion_norm``. With the score s(x, t) = -(x + (1 - t) v) / t (as in
    `euler_maruyama`), the reverse-time SDE with the ODE's marginals is dx = (v - w s) dt + sqrt(2 w) dW."""
    vel = v(x, t, y)
    w = diffusion_norm * t / (1 - t)
    score = -(x + (1 - t) * vel) / t
    return vel - w * score, w


def sbdm_sde(v: Velocity, x: torch.Tensor, y: torch.Tensor, steps: int, generators: Sequence[torch.Generator] = (),
             diffusion_norm: float = 1.0, grid: str = "steps", **_: Any) -> torch.Tensor:
    """The MPDiT authors' (and SiT's default) SBDM SDE: Euler-Maruyama over a uniform grid from t = 0.96 to
    0.04 (the starting noise taken as the state at 0.96, where w is finite), then one deterministic step of
    the same drift to t = 0. ``steps`` counts the grid as ``grid`` says: the authors' 250 are 250 points
    (249 noisy steps + the last one = 250 model calls).

        x <- x + dt * (v - w s) + sqrt(2 w |dt|) xi,  dt = t_next - t < 0"""
    ts = time_grid(steps, grid, SBDM_T_START, SBDM_LAST_STEP)
    for t, t_next in zip(ts[:-1], ts[1:]):
        drift, w = sbdm_drift(v, x, t, y, diffusion_norm)
        dt = t_next - t
        x = x + dt * drift
        if w > 0:  # diffusion_norm 0 is the probability-flow ODE: no noise drawn
            x = x + math.sqrt(2 * w * abs(dt)) * _noise_like(x, generators)
    drift, _ = sbdm_drift(v, x, ts[-1], y, diffusion_norm)
    return x - ts[-1] * drift


def _field(v: Velocity, y: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The velocity as torchdiffeq calls it: f(t, x) with t a 0-dim tensor."""
    return lambda t, state: v(state, float(t.detach()), y)


def dopri5(v: Velocity, x: torch.Tensor, y: torch.Tensor, steps: int, atol: float = 1e-6, rtol: float = 1e-3,
           **_: Any) -> torch.Tensor:
    """torchdiffeq's adaptive Dormand-Prince 5(4) from t = 1 to t = 0 (SiT's ODE sampler)."""
    from torchdiffeq import odeint

    times = torch.tensor([1.0, 0.0], dtype=torch.float64, device=x.device)
    return odeint(_field(v, y), x, times, method="dopri5", atol=atol, rtol=rtol)[-1]


def heun2(v: Velocity, x: torch.Tensor, y: torch.Tensor, steps: int, grid: str = "steps", **_: Any) -> torch.Tensor:
    """torchdiffeq's fixed-grid Heun (``heun2``) over ``time_grid(steps, grid)``: PPFlow's ODE default (SiT's
    ``sample_ode`` over ``linspace`` of 250 points). Only the end state is kept, not every grid point."""
    from torchdiffeq import odeint

    grid_times = torch.tensor(time_grid(steps, grid), dtype=torch.float64, device=x.device)
    ends = grid_times[[0, -1]]
    return odeint(_field(v, y), x, ends, method="heun2",
                  options={"grid_constructor": lambda *_: grid_times})[-1]


INTEGRATORS = {"euler": euler, "heun": heun, "heun2": heun2, "sde": euler_maruyama, "sde_sbdm": sbdm_sde,
               "dopri5": dopri5}


# ---- per-sample randomness -------------------------------------------------------------------------------
def sample_generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + index * 7_919 + 17) % (2**63 - 1))


def make_labels(num: int, num_classes: int, labels: str | int, seed: int) -> torch.Tensor:
    """(num,) labels: uniform at random (ADM), balanced (i mod C) or one class."""
    if labels == "balanced":
        return torch.arange(num) % num_classes
    if isinstance(labels, int):
        if labels >= num_classes:
            raise ConfigError("labels", labels, f"a class index in [0, {num_classes - 1}]")
        return torch.full((num,), labels, dtype=torch.long)
    return torch.randint(num_classes, (num,), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def sample_indices(model: torch.nn.Module, cfg: ModelConfig, indices: Sequence[int], labels: torch.Tensor,
                   options: dict[str, Any], device: torch.device, on_batch: Callable[[int], None] | None = None
                   ) -> torch.Tensor:
    """Samples (len(indices), C, H, W) in model space for global sample ``indices`` with ``labels``."""
    o = options
    check_cfg_scale(o["cfg_scale"], cfg)
    v = guided_velocity(model, cfg.in_channels, cfg.num_classes, o["cfg_scale"], o["guidance_interval"],
                        o["cfg_channels"])
    shape = (cfg.in_channels, cfg.input_size, cfg.input_size)
    outs = []
    for start in range(0, len(indices), o["batch_size"]):
        rows = list(indices[start:start + o["batch_size"]])
        gens = [sample_generator(o["seed"], i) for i in rows]
        x = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)  # (B, C, H, W)
        y = labels[start:start + len(rows)].to(device)
        x = INTEGRATORS[o["sampler"]](v, x, y, o["steps"], generators=gens, diffusion_norm=o["diffusion_norm"],
                                      grid=o["grid"], atol=o["atol"], rtol=o["rtol"])
        outs.append(x.float().cpu())
        if on_batch is not None:
            on_batch(len(rows))
    return torch.cat(outs) if outs else torch.empty((0, *shape))


# ---- from model space to images ----------------------------------------------------------------------------
def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> ADM's uint8 (N, H, W, 3) via clamp(127.5 x + 128); 1 channel repeated."""
    img = (127.5 * x + 128).clamp(0, 255).to(torch.uint8)
    if img.shape[1] == 1:
        img = img.repeat(1, 3, 1, 1)
    return img.permute(0, 2, 3, 1).contiguous().numpy()


class LatentDecoder:
    """Undo the store's per-channel normalisation and decode with a diffusers AutoencoderKL (local path)."""

    def __init__(self, vae_path: str | Path, mean: Sequence[float], std: Sequence[float], device: torch.device):
        from mpdit_bench.data.latents import load_vae

        self.vae = load_vae(vae_path, device)
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.device = device

    @torch.no_grad()
    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        z = z.to(self.device) * self.std + self.mean
        return self.vae.decode(z).sample.float().cpu()  # (B, 3, 8h, 8w) in about [-1, 1]


def save_grid(images: np.ndarray, path: str | Path, nrow: int, class_names: Sequence[str] | None = None) -> Path:
    """uint8 (N, H, W, 3) -> one PNG, ``nrow`` images per row, 2-pixel gaps. With ``class_names`` (balanced
    labels, image i of class i mod C) each row holds one class, named in a margin on its left."""
    from PIL import Image, ImageDraw

    n, h, w, _ = images.shape
    classes = len(class_names) if class_names else 0
    rows, cols = (classes, math.ceil(n / classes)) if classes else (math.ceil(n / nrow), nrow)
    margin = 6 * max(map(len, class_names)) + 6 if classes else 0  # the default bitmap font is 6 px a character
    canvas = np.zeros((rows * (h + 2) + 2, margin + cols * (w + 2) + 2, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = (i % classes, i // classes) if classes else divmod(i, nrow)
        canvas[2 + r * (h + 2): 2 + r * (h + 2) + h, margin + 2 + c * (w + 2): margin + 2 + c * (w + 2) + w] = img
    grid = Image.fromarray(canvas)
    draw = ImageDraw.Draw(grid)
    for r, name in enumerate(class_names or ()):
        draw.text((3, 2 + r * (h + 2) + max(0, h // 2 - 5)), name, fill=(255, 255, 255))
    with atomic_path(path) as tmp:
        grid.save(tmp)
    return Path(path)


def class_names(data_name: str | None, num_classes: int, labels: Any) -> Sequence[str] | None:
    """The names a grid's rows carry: balanced labels of a dataset whose classes are known, at most 20."""
    from mpdit_bench.data.fashion_mnist import CLASSES

    if labels != "balanced" or num_classes > 20 or data_name != "fashion-mnist" or num_classes != len(CLASSES):
        return None
    return CLASSES


def load_sampling_model(ckpt: dict[str, Any], use_ema: bool, device: torch.device) -> tuple[torch.nn.Module, ModelConfig]:
    from mpdit_bench.models import build_model

    cfg = ModelConfig.from_dict(ckpt["model_config"], source="checkpoint model_config")
    model = build_model(cfg)
    model.load_state_dict(ckpt["ema"] if use_ema and "ema" in ckpt else ckpt["model"])
    return model.to(device).eval(), cfg


def sample_checkpoint(ckpt: str | Path, num: int, out: str | Path, vae: str | Path | None = None,
                      device: str = "auto", grid_max: int = 100, progress: bool = True, **options: Any) -> Path:
    """Sample ``num`` images from a checkpoint into ADM's .npz (arr_0 uint8 NHWC, arr_1 labels) and a PNG grid.

    Options (see OPTION_DEFAULTS) default to the run config's ``sample`` section, then to the built-in
    defaults. Under torchrun each rank samples indices rank, rank + world, ...; rank 0 writes the files."""
    out = Path(out)
    if out.suffix != ".npz":
        raise ConfigError("--out", str(out), "a path ending in .npz")
    if num < 1:
        raise ConfigError("--num", num, "an integer >= 1")
    state = checkpoint.load(ckpt)
    run_defaults = (state.get("run_config") or {}).get("sample") or {}
    given = {k: v for k, v in options.items() if v is not None}  # a flag not given leaves the run's default
    o = check_options({**{k: v for k, v in run_defaults.items() if k in OPTION_DEFAULTS}, **given}, str(ckpt))
    dinfo = state.get("data_info") or {}
    if dinfo.get("name") == "latents" and vae is None:
        raise ConfigError("--vae", None, "a local AutoencoderKL folder: this checkpoint was trained on latents")
    if dinfo.get("name") not in (None, "latents") and vae is not None:
        raise ConfigError("--vae", str(vae), f"none: this checkpoint generates {dinfo['name']} images, not latents "
                          "to decode", str(ckpt))

    info = distributed.setup(device)
    try:
        with applied(SETTINGS):
            check_cfg_scale(o["cfg_scale"], ModelConfig.from_dict(state["model_config"]), str(ckpt))  # before loading
            model, cfg = load_sampling_model(state, o["use_ema"], info.device)
            del state
            decoder = (LatentDecoder(vae, dinfo["latent_mean"], dinfo["latent_std"], info.device)
                       if dinfo.get("name") == "latents" else None)
            labels = make_labels(num, cfg.num_classes, o["labels"], o["seed"])
            mine = list(range(info.rank, num, info.world_size))
            bar = ProgressBar("sample", len(mine), enabled=progress and info.is_main)
            chunks = []  # uint8 (b, H, W, 3) per batch: latents are decoded as they come, not held for all samples
            try:
                for start in range(0, len(mine), o["batch_size"]):
                    rows = mine[start:start + o["batch_size"]]
                    x = sample_indices(model, cfg, rows, labels[rows], o, info.device, bar.advance)  # (b, C, h, w)
                    chunks.append(to_uint8(decoder(x) if decoder else x))
            finally:
                bar.close()
            images = np.concatenate(chunks) if chunks else np.zeros((0, 1, 1, 3), np.uint8)
            out.parent.mkdir(parents=True, exist_ok=True)
            part = out.with_name(f".{out.stem}.rank{info.rank}.npz")
            save_npz_atomic(part, images=images, indices=np.asarray(mine, dtype=np.int64))
            distributed.barrier()
            if info.is_main:
                _merge_parts(out, num, labels, info.world_size)
                nrow = cfg.num_classes if o["labels"] == "balanced" and cfg.num_classes <= 20 else \
                    math.ceil(math.sqrt(min(num, grid_max)))
                with np.load(out) as f:
                    save_grid(f["arr_0"][:grid_max], out.with_suffix(".png"), nrow,
                              class_names(dinfo.get("name"), cfg.num_classes, o["labels"]))
            distributed.barrier()
    finally:
        distributed.teardown()
    return out


def _merge_parts(out: Path, num: int, labels: torch.Tensor, world: int) -> None:
    merged = None
    for r in range(world):
        part = out.with_name(f".{out.stem}.rank{r}.npz")
        with np.load(part) as f:
            imgs, idx = f["images"], f["indices"]
        if len(idx):
            if merged is None:
                merged = np.zeros((num, *imgs.shape[1:]), dtype=np.uint8)
            merged[idx] = imgs
    save_npz_atomic(out, arr_0=merged, arr_1=labels.numpy().astype(np.int64))
    for r in range(world):
        out.with_name(f".{out.stem}.rank{r}.npz").unlink()


__all__ = ["GRIDS", "SAMPLERS", "check_cfg_scale", "check_options", "parse_sample_options",
           "dopri5", "euler", "euler_maruyama", "guided_velocity", "heun", "heun2", "make_labels", "sbdm_sde",
           "sample_checkpoint", "sample_indices", "save_grid", "to_uint8"]
