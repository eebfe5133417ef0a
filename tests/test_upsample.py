"""The upsample block as expand + refine: the five designs of MPDiT Table 7 build, keep shapes, start at zero."""

import pytest
import torch

from mpdit_bench import components, registry  # noqa: F401 (components fill the registry)
from mpdit_bench.components.upsample import build_upsample
from mpdit_bench.config import ModelConfig
from mpdit_bench.components import flops
from mpdit_bench.counting.measure import fvcore_flops
from mpdit_bench.models import build_model

TABLE7 = {"Linear": ("linear", "none"), "ConvTranspose": ("conv_transpose", "none"),
          "Linear+Linear": ("linear", "linear"), "Linear+MLP": ("linear", "mlp"), "Linear+Conv": ("linear", "conv")}
D, F, H, M = 32, 2, 3, 4


def cfg(expand: str, refine: str, **kw) -> ModelConfig:
    return ModelConfig.from_dict(dict(hidden_size=D, num_heads=2, mlp_ratio=2.0, in_channels=3, num_classes=5,
                                      input_size=16, patch_sizes=[4, 2], depths=[1, 1], class_tokens=M,
                                      upsample=expand, upsample_refine=refine, upsample_refine_ratio=3, **kw))


@pytest.mark.parametrize("design", TABLE7)
def test_table7_design_shapes(design):
    block = build_upsample(cfg(*TABLE7[design]), F)
    x, cls = torch.randn(2, H * H, D), torch.randn(2, M, D)
    img, tokens = block(x, cls, H, H)
    assert img.shape == (2, F * F * H * H, D) and tokens.shape == (2, M, D)
    img, tokens = block(x, None, H, H)
    assert img.shape == (2, F * F * H * H, D) and tokens is None


def test_no_refine_passes_class_tokens_unchanged_and_others_mix_them():
    x, cls = torch.randn(1, H * H, D), torch.randn(1, M, D)
    assert build_upsample(cfg("linear", "none"), F)(x, cls, H, H)[1] is cls
    assert not torch.allclose(build_upsample(cfg("linear", "mlp"), F)(x, cls, H, H)[1], cls)


def test_mlp_refine_width_follows_the_ratio():
    block = build_upsample(cfg("linear", "mlp"), F)
    assert block.refine.fc1.weight.shape == (3 * D, D) and block.refine.fc2.weight.shape == (D, 3 * D)


def test_conv_refine_convolves_the_image_grid_only():
    """Moving one image token changes its neighbours (3x3 conv); the class tokens see no neighbours."""
    block = build_upsample(cfg("linear", "conv"), F).refine
    assert block.depthwise.groups == D and block.depthwise.kernel_size == (3, 3)
    x, cls = torch.randn(1, 36, D), torch.randn(1, M, D)
    base, _ = block(x, cls, 6, 6)
    bumped = x.clone()
    bumped[0, 0] += 1.0
    moved, _ = block(bumped, cls, 6, 6)
    changed = (moved - base).abs().sum(-1)[0] > 1e-6
    assert changed[[0, 1, 6, 7]].all() and not changed[[2, 12, 35]].any()


@pytest.mark.parametrize("design", TABLE7)
def test_table7_design_starts_at_zero(design):
    """Zero biases in the block (the model's Linear/conv init) and a zero model output before training."""
    model = build_model(cfg(*TABLE7[design]))
    biases = [p for n, p in model.upsamples[0].named_parameters() if n.endswith("bias")]
    assert biases and all(torch.count_nonzero(b) == 0 for b in biases)
    x = torch.randn(2, 3, 16, 16)
    assert torch.count_nonzero(model(x, torch.rand(2), torch.tensor([0, 5]))) == 0


def test_conv_transpose_paper_charge_is_per_output_position():
    """fvcore charges the transposed conv per input position; the paper convention adds f^2 - 1 times that."""
    block = build_upsample(cfg("conv_transpose", "none"), F).expand
    true, _ = fvcore_flops(block, (torch.randn(1, H * H, D), H, H))
    with flops.tally() as kinds:
        assert block.flops(H, H) == true == D * D * F * F * H * H
    assert kinds["conv_transpose_output_extra"] == D * D * F * F * (F * H) ** 2 - true


def test_every_expand_and_refine_is_registered_with_a_docstring():
    def built_in(kind):  # other tests register plugin components in this process too
        return [n for n in registry.names(kind) if registry.get(kind, n).__module__.startswith("mpdit_bench.")]

    assert built_in("upsample") == ["conv_transpose", "linear"]
    assert built_in("upsample_refine") == ["conv", "linear", "mlp", "none"]
    for kind in ("upsample", "upsample_refine"):
        for name in registry.names(kind):
            assert registry.get(kind, name).__doc__
