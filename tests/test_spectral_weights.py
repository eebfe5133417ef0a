"""FNO spectral weights: two real parameters that survive dtype moves, the printed count, old checkpoints."""

import pytest
import torch

from mpdit_bench.components.time_embed import FnoTimeEmbedder, SpectralConv1d, complex_pairs
from mpdit_bench.counting import param_count, param_counts, storage_param_count
from mpdit_bench.models import build_model, model_config


def small_fno(init: str = "fno") -> FnoTimeEmbedder:
    torch.manual_seed(0)
    return FnoTimeEmbedder(hidden_size=16, spectral_init=init)


@pytest.mark.parametrize("move", ["bf16", "half"])
def test_both_parts_survive_a_round_trip_through_a_low_precision_dtype(move):
    fno = small_fno("authors")
    before = fno.spectral[0].complex_weight().clone()
    low = fno.to(torch.bfloat16) if move == "bf16" else fno.half()
    layer = low.spectral[0]
    assert layer.weight_real.dtype == layer.weight_imag.dtype == (torch.bfloat16 if move == "bf16" else torch.float16)
    back = low.float().spectral[0].complex_weight()
    # the imaginary half is kept, to the low dtype's rounding (8 or 11 bits of mantissa)
    assert back.imag.abs().sum() > 0.5 * before.imag.abs().sum()
    rel = 2.0 ** -8 if move == "bf16" else 2.0 ** -11
    assert torch.allclose(back.real, before.real, rtol=rel, atol=0)
    assert torch.allclose(back.imag, before.imag, rtol=rel, atol=0)


def test_low_precision_model_computes_the_spectral_part_in_float32():
    fno = small_fno("authors")
    t = torch.tensor([0.1, 0.5, 0.9])
    ref = fno(t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fno.to(torch.bfloat16)(t).float()
    assert torch.allclose(out, ref, rtol=0.05, atol=0.05 * ref.abs().max().item())


def test_autocast_leaves_the_spectral_weights_and_their_product_in_float32():
    fno = small_fno("authors")
    x = torch.randn(2, 32, 32)
    layer = fno.spectral[0]
    ref = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_inits_follow_their_definitions():
    authors = SpectralConv1d(32, 16, "authors")
    fno = SpectralConv1d(32, 16, "fno")
    for part in (authors.weight_real, authors.weight_imag):
        assert abs(part.std().item() - 1.0) < 0.05 and abs(part.mean().item()) < 0.05  # N(0, 1), 16k draws
    for part in (fno.weight_real, fno.weight_imag):
        assert part.min() >= 0 and part.max() < 1 / 32 ** 2
        assert abs(part.mean().item() - 0.5 / 32 ** 2) < 0.05 / 32 ** 2
    with pytest.raises(ValueError, match="allowed: fno, authors"):
        SpectralConv1d(4, 2, "xavier")


def test_printed_count_takes_a_complex_weight_as_one_number():
    with torch.device("meta"):
        model = build_model(model_config("MPDiT-B"))
    spectral = [m for m in model.modules() if isinstance(m, SpectralConv1d)]
    imag = sum(m.weight_imag.numel() for m in spectral)
    assert len(spectral) == 3 and imag == 3 * 32 * 32 * 16 == complex_pairs(model)
    assert storage_param_count(model) == sum(p.numel() for p in model.parameters())
    assert param_count(model) == storage_param_count(model) - imag
    assert round(param_count(model) / 1e6, 1) == 104.8  # the paper's figure
    assert round(storage_param_count(model) / 1e6, 2) == 104.85  # what the authors' code stores
    total, trainable = param_counts(model)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert total == param_count(model) and trainable == total - frozen


def test_a_checkpoint_with_one_complex_weight_still_loads():
    torch.manual_seed(1)
    fno = FnoTimeEmbedder(hidden_size=16)
    packed = {}
    for key, value in fno.state_dict().items():
        if key.endswith("weight_imag"):
            continue
        if key.endswith("weight_real"):
            prefix = key[: -len("weight_real")]
            value = torch.complex(torch.randn_like(value), torch.randn_like(value))
            key = prefix + "weight"
        packed[key] = value
    fresh = FnoTimeEmbedder(hidden_size=16)
    fresh.load_state_dict(packed)  # strict: no missing or unexpected keys
    for i, layer in enumerate(fresh.spectral):
        assert torch.equal(layer.complex_weight(), packed[f"spectral.{i}.weight"])


def test_a_real_tensor_under_the_old_name_is_refused():
    fno = FnoTimeEmbedder(hidden_size=16)
    sd = fno.state_dict()
    sd["spectral.0.weight"] = sd.pop("spectral.0.weight_real")
    with pytest.raises(RuntimeError, match="spectral.0.weight"):
        FnoTimeEmbedder(hidden_size=16).load_state_dict(sd)


def test_a_model_checkpoint_with_complex_spectral_weights_loads_through_the_sampling_loader():
    from mpdit_bench.engine.sampling import load_sampling_model

    cfg = model_config("MPDiT-B", hidden_size=32, num_heads=2, input_size=8, class_tokens=1)
    torch.manual_seed(0)
    model = build_model(cfg)
    old = {}
    for key, value in model.state_dict().items():
        if key.endswith("weight_imag"):
            continue
        if key.endswith("weight_real"):
            imag = model.state_dict()[key.replace("weight_real", "weight_imag")]
            key, value = key.replace("weight_real", "weight"), torch.complex(value, imag)
        old[key] = value
    ckpt = {"model_config": cfg.to_dict(), "model": old, "ema": old}
    loaded, _ = load_sampling_model(ckpt, use_ema=True, device=torch.device("cpu"))
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([0.2, 0.8]), torch.tensor([0, 3])
    with torch.no_grad():
        assert torch.equal(loaded(x, t, y), model.eval()(x, t, y))
