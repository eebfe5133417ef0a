"""Shapes for every component combination, zero output at init, upsample ordering, FNO sensitivity."""

import itertools

import pytest
import torch
from torch import nn

from mpdit_bench import components, registry  # noqa: F401 (components fill the registry)
from mpdit_bench.components.time_embed import FnoTimeEmbedder, MlpTimeEmbedder
from mpdit_bench.components.upsample import pixel_shuffle_tokens
from mpdit_bench.config import ModelConfig
from mpdit_bench.models import build_model

HIERARCHIES = {"iso": ((2,), (2,)), "4-2": ((4, 2), (1, 1)), "8-4-2": ((8, 4, 2), (1, 1, 1))}
COMBOS = list(itertools.product(registry.names("upsample"), registry.names("time_embedder"), (0, 3),
                                registry.names("modulation"), HIERARCHIES))


def tiny(**kw) -> ModelConfig:
    base = dict(hidden_size=32, num_heads=2, mlp_ratio=2.0, in_channels=3, num_classes=5, input_size=16,
                time_embedder_layers=2)
    return ModelConfig.from_dict({**base, **kw})


def inputs(cfg: ModelConfig, batch: int = 2):
    x = torch.randn(batch, cfg.in_channels, cfg.input_size, cfg.input_size)
    return x, torch.rand(batch), torch.tensor([0, cfg.num_classes])[:batch]


def perturb_zero_inits(model: nn.Module) -> None:
    """Give the zero-initialised layers random weights so that the output is no longer trivial."""
    for p in model.parameters():
        if p.requires_grad and not p.is_complex() and torch.all(p == 0):
            nn.init.normal_(p, std=0.05)


@pytest.mark.parametrize("upsample,time_embedder,m,modulation,hierarchy", COMBOS,
                         ids=["-".join(map(str, c)) for c in COMBOS])
def test_every_combination_builds_runs_and_starts_at_zero(upsample, time_embedder, m, modulation, hierarchy):
    patches, depths = HIERARCHIES[hierarchy]
    cfg = tiny(upsample=upsample, time_embedder=time_embedder, class_tokens=m, modulation=modulation,
               patch_sizes=list(patches), depths=list(depths))
    model = build_model(cfg)
    x, t, y = inputs(cfg)
    out = model(x, t, y)
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # zero-initialised final Linear and modulation
    perturb_zero_inits(model)
    out = model(x, t, y)
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().max() > 0
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_learn_sigma_doubles_output_channels():
    cfg = tiny(learn_sigma=True)
    x, t, y = inputs(cfg)
    assert build_model(cfg)(x, t, y).shape == (2, 6, 16, 16)


def test_blocks_are_identity_at_init():
    cfg = tiny(patch_sizes=[4, 2], depths=[2, 2], modulation="shared", class_tokens=2)
    model = build_model(cfg)
    block = model.levels[0][0]
    h = torch.randn(2, 18, 32)
    mods, _ = model.modulation(model.time_embed(torch.rand(2)))
    assert torch.equal(block(h, mods[0]), h)


def test_class_label_reaches_output_through_tokens_not_modulation():
    cfg = tiny(patch_sizes=[4, 2], depths=[1, 1], modulation="shared", class_tokens=2)
    model = build_model(cfg)
    perturb_zero_inits(model)
    x, t, _ = inputs(cfg, 1)
    a, b = model(x, t, torch.tensor([1])), model(x, t, torch.tensor([2]))
    assert not torch.allclose(a, b)
    vec, tokens = model.class_embed(torch.tensor([1]))
    assert vec is None and tokens.shape == (1, 2, 32)


def test_linear_upsample_rearranges_exactly_like_pixel_shuffle():
    B, h, w, f, D = 2, 3, 5, 2, 4
    tokens = torch.randn(B, h * w, f * f * D)
    as_map = tokens.transpose(1, 2).reshape(B, f * f * D, h, w)
    expected = nn.PixelShuffle(f)(as_map).flatten(2).transpose(1, 2)  # (B, h f w f, D) row-major
    assert torch.equal(pixel_shuffle_tokens(tokens, h, w, f), expected)


def test_fno_embeds_nearby_times_differently():
    torch.manual_seed(0)
    fno = FnoTimeEmbedder(hidden_size=64)
    nn.init.normal_(fno.out.weight)
    t = torch.tensor([0.500, 0.501, 0.500])
    e = fno(t)
    assert torch.equal(e[0], e[2])  # deterministic
    gap = (e[0] - e[1]).norm() / e[0].norm()
    assert gap > 1e-4
    assert FnoTimeEmbedder(64, num_layers=5)(t).shape == (3, 64)


def test_mlp_time_embedder_layer_count():
    assert sum(isinstance(m, nn.Linear) for m in MlpTimeEmbedder(64, num_layers=4).modules()) == 4


def test_a_new_component_needs_only_registration():
    @registry.register("upsample", "test_repeat")
    class RepeatExpand(nn.Module):
        """Nearest-neighbour repeat without weights (test only)."""

        def __init__(self, hidden_size, factor):
            super().__init__()
            self.factor = factor

        def forward(self, x, h, w):
            return pixel_shuffle_tokens(x.repeat(1, 1, self.factor ** 2), h, w, self.factor)

        def flops(self, h, w):
            return 0

    try:
        cfg = tiny(patch_sizes=[4, 2], depths=[1, 1], upsample="test_repeat")
        x, t, y = inputs(cfg)
        assert build_model(cfg)(x, t, y).shape == x.shape
    finally:
        registry._REGISTRY["upsample"].pop("test_repeat")
