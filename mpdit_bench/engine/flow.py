"""Flow matching as MPDiT trains it: t = 0 is data, t = 1 is noise.

    z_t = (1 - t) z + t n,   target v = n - z,   t = sigmoid(N(mean, std)) (logit-normal),
    labels replaced by the null class (= num_classes) with probability ``label_drop``.

A model with a patch schedule (PPFlow) replaces the logit-normal t by ``times``, e.g. stage-proportional
t from ``ppflow.sample_stage_times``, drawn from the same generator at the same point of the stream.

The random draws of a step come from one generator seeded by (seed, step) and are drawn for the whole
global batch; each rank takes its own rows. So the noise a sample gets depends only on its position
in the global batch, not on how many ranks share it, and a resumed run draws exactly what an
uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass
class FlowDraws:
    """The random quantities of one training step for this rank's rows."""

    noise: torch.Tensor  # (B, C, H, W)
    t: torch.Tensor  # (B,)
    drop: torch.Tensor  # (B,) bool: label replaced by the null class


def step_generator(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator whose stream depends only on (seed, step)."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
    return g


def logit_normal_t(n: int, generator: torch.Generator, mean: float = 0.0, std: float = 1.0,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.sigmoid(torch.randn(n, generator=generator, device=device) * std + mean)


def draw(shape: tuple[int, ...], global_batch: int, rank: int, world: int, seed: int, step: int,
         label_drop: float = 0.1, t_mean: float = 0.0, t_std: float = 1.0,
         device: torch.device | str = "cpu",
         times: Callable[[int, torch.Generator], torch.Tensor] | None = None) -> FlowDraws:
    """Draw noise, t and label drops for the global batch, keep rows rank, rank + world, ...

    Row r + world * j of the global batch is this rank's j-th sample, matching DistributedSampler's
    interleaved sharding, so the sample -> noise pairing is the same for any world size.
    ``times(n, generator) -> (n,) t`` replaces the logit-normal draw (t_mean, t_std then unused)."""
    g = step_generator(seed, step, device)
    noise = torch.randn((global_batch, *shape), generator=g, device=device)
    if times is None:
        t = logit_normal_t(global_batch, g, t_mean, t_std, device)
    else:
        t = times(global_batch, g).to(device)
    drop = torch.rand(global_batch, generator=g, device=device) < label_drop
    rows = slice(rank, global_batch, world)
    return FlowDraws(noise[rows], t[rows], drop[rows])


def interpolate(z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """z_t = (1 - t) z + t n, t broadcast over (C, H, W)."""
    t = t.view(-1, *([1] * (z.dim() - 1)))
    return (1 - t) * z + t * noise


def drop_labels(y: torch.Tensor, drop: torch.Tensor, null_class: int) -> torch.Tensor:
    return torch.where(drop, torch.full_like(y, null_class), y)


def flow_loss(model: torch.nn.Module, z: torch.Tensor, y: torch.Tensor, draws: FlowDraws,
              null_class: int) -> torch.Tensor:
    """MSE between the predicted and the true velocity n - z; only the first C output channels
    are the velocity (DiT's learned-sigma channels, if any, are ignored)."""
    z_t = interpolate(z, draws.noise, draws.t)
    y = drop_labels(y, draws.drop, null_class)
    pred = model(z_t, draws.t, y)[:, : z.shape[1]]  # (B, C_out, H, W) -> (B, C, H, W)
    return F.mse_loss(pred.float(), (draws.noise - z).float())


__all__ = ["FlowDraws", "draw", "drop_labels", "flow_loss", "interpolate", "logit_normal_t", "step_generator"]
