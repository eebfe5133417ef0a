"""Time embedders: t in [0, 1] (0 = data, 1 = noise) -> (B, D)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mpdit_bench.components import flops
from mpdit_bench.registry import register


def sinusoid_frequencies(dim: int = 256, max_period: float = 10000.0, device=None) -> torch.Tensor:
    """(dim // 2,) float32 frequencies max_period^(-i / half), i = 0 .. half - 1."""
    half = dim // 2
    return torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=device) / half)


def sinusoidal_features(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0,
                        scale: float = 1000.0) -> torch.Tensor:
    """DiT's sinusoidal timestep features of ``scale`` * t ([cos, sin] halves); the default 1000 maps t in
    [0, 1] to DiT's integer-step range."""
    freqs = sinusoid_frequencies(dim, max_period, t.device)
    args = (t.float() * scale)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


@register("time_embedder", "mlp")
class MlpTimeEmbedder(nn.Module):
    """DiT's timestep embedder: sinusoidal(256) of ``time_scale`` * t -> Linear -> (SiLU -> Linear) x (n-1);
    DiT uses n=2 and 1000 (its integer steps), SiT, PPFlow and the MPDiT authors n=2 and 1 (raw t)."""

    def __init__(self, hidden_size: int, num_layers: int = 2, frequency_dim: int = 256, time_scale: float = 1000.0,
                 **_other_embedders_options):
        super().__init__()
        self.frequency_dim, self.time_scale = frequency_dim, time_scale
        layers: list[nn.Module] = [nn.Linear(frequency_dim, hidden_size)]
        for _ in range(num_layers - 1):
            layers += [nn.SiLU(), nn.Linear(hidden_size, hidden_size)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_features(t, self.frequency_dim, scale=self.time_scale).to(self.mlp[0].weight.dtype))

    def init_weights(self) -> None:
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)

    def flops(self) -> int:
        return sum(flops.linear(1, m.in_features, m.out_features) for m in self.mlp if isinstance(m, nn.Linear))


class SpectralConv1d(nn.Module):
    """Fourier layer: rfft in float32, the first ``modes`` frequencies times learned complex weights, irfft.

    The complex weights are two real parameters, ``weight_real`` and ``weight_imag``, joined into one
    complex float32 tensor inside forward: a complex parameter loses its imaginary half when a module is
    moved to a real dtype (``.to(torch.bfloat16)``, ``.half()``). ``init``: "fno" draws both parts from
    U[0, 1) / C^2 (the original FNO code), "authors" from N(0, 1) (MPDiT's Algorithm 2). The parameter
    count takes one complex weight as one number, as the paper prints it (``complex_pairs``)."""

    def __init__(self, channels: int, modes: int, init: str = "fno"):
        super().__init__()
        if init not in ("fno", "authors"):
            raise ValueError(f"spectral init {init!r}; allowed: fno, authors")
        self.modes, self.init = modes, init
        self.weight_real = nn.Parameter(torch.empty(channels, channels, modes))
        self.weight_imag = nn.Parameter(torch.empty(channels, channels, modes))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Drawn once, at construction (the model's ``init_weights`` leaves these alone)."""
        if self.init == "authors":
            nn.init.normal_(self.weight_real)
            nn.init.normal_(self.weight_imag)
            return
        channels = self.weight_real.shape[0]
        # one complex draw, real and imaginary interleaved in the generator's stream
        drawn = torch.rand(self.weight_real.shape, dtype=torch.cfloat, device=self.weight_real.device)
        self.weight_real.copy_(drawn.real / channels ** 2)
        self.weight_imag.copy_(drawn.imag / channels ** 2)

    def complex_weight(self) -> torch.Tensor:
        return torch.complex(self.weight_real.float(), self.weight_imag.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, N) -> (B, C, N)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            x_ft = torch.fft.rfft(x.float())
            mixed = torch.einsum("bix,iox->box", x_ft[..., : self.modes], self.complex_weight())
            out_ft = F.pad(mixed, (0, x_ft.shape[-1] - self.modes))
            return torch.fft.irfft(out_ft, n=x.shape[-1])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint may hold the weights as one complex tensor under "weight"
        packed = state_dict.pop(prefix + "weight", None)
        if packed is not None and packed.is_complex():
            state_dict[prefix + "weight_real"] = packed.real.float()
            state_dict[prefix + "weight_imag"] = packed.imag.float()
        elif packed is not None:
            state_dict[prefix + "weight"] = packed  # not ours: let load_state_dict report it
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def flops(self) -> int:
        channels = self.weight_real.shape[0]
        return channels * channels * self.modes  # one complex multiply-add per weight, as fvcore's einsum


def complex_pairs(model: nn.Module) -> int:
    """Real numbers stored as the second half of a complex weight: storage count minus this is the count
    that takes a complex weight as one number (the papers' convention)."""
    return sum(m.weight_imag.numel() for m in model.modules() if isinstance(m, SpectralConv1d))


@register("time_embedder", "fno")
class FnoTimeEmbedder(nn.Module):
    """MPDiT's MixedFNO time embedding: the grid linspace(-1, 1, 32) + t lifted to 32 channels, n layers of
    SpectralConv1d + pointwise Conv1d (GELU between layers), mean over the grid, Linear(32 -> D)."""

    def __init__(self, hidden_size: int, num_layers: int = 3, width: int = 32, grid_size: int = 32, modes: int = 16,
                 spectral_init: str = "fno", **_other_embedders_options):
        super().__init__()
        self.register_buffer("grid", torch.linspace(-1.0, 1.0, grid_size), persistent=False)
        self.lift = nn.Linear(1, width)
        self.spectral = nn.ModuleList(SpectralConv1d(width, modes, spectral_init) for _ in range(num_layers))
        self.pointwise = nn.ModuleList(nn.Conv1d(width, width, 1) for _ in range(num_layers))
        self.out = nn.Linear(width, hidden_size)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = self.lift((self.grid[None] + t.float()[:, None]).unsqueeze(-1))  # (B, N) -> (B, N, W)
        x = x.transpose(1, 2)  # (B, W, N)
        for i, (spectral, pointwise) in enumerate(zip(self.spectral, self.pointwise)):
            x = spectral(x) + pointwise(x)
            if i < len(self.spectral) - 1:
                x = F.gelu(x)
        return self.out(x.mean(dim=-1).to(self.out.weight.dtype))

    def flops(self) -> int:
        n, width = self.grid.numel(), self.lift.out_features
        layers = sum(spectral.flops() + flops.linear(n, width, width) for spectral in self.spectral)
        return flops.linear(n, 1, width) + layers + flops.linear(1, width, self.out.out_features)
