"""Config keys for the sources' conventions: the sinusoid's input scale and the FNO spectral init."""

import hashlib
import json

import pytest
import torch

from mpdit_bench.components.time_embed import MlpTimeEmbedder
from mpdit_bench.config import ConfigError
from mpdit_bench.models import build_model, model_config


def test_time_embed_scale_multiplies_t_before_the_sinusoid():
    torch.manual_seed(0)
    raw = MlpTimeEmbedder(32, time_scale=1.0)
    dit = MlpTimeEmbedder(32)
    dit.load_state_dict(raw.state_dict())
    t = torch.tensor([0.0, 0.25, 0.9])
    assert torch.allclose(raw(t * 1000), dit(t), atol=1e-5)
    assert not torch.allclose(raw(t), dit(t), atol=1e-3)


def test_model_config_reaches_the_embedders():
    tiny = dict(hidden_size=32, num_heads=2, input_size=8)
    mlp = build_model(model_config("SiT-S/2", time_embed_scale=1, **tiny))
    assert mlp.time_embed.time_scale == 1.0
    torch.manual_seed(0)
    authors = build_model(model_config("MPDiT-B", fno_init="authors", class_tokens=1, **tiny))
    torch.manual_seed(0)
    fno = build_model(model_config("MPDiT-B", class_tokens=1, **tiny))
    assert authors.time_embed.spectral[0].weight_imag.abs().max() > 1.0  # N(0, 1) over 16k draws
    assert fno.time_embed.spectral[0].weight_imag.abs().max() < 1 / 32 ** 2


@pytest.mark.parametrize("key,value,allowed", [("fno_init", "normal", "fno, authors"),
                                               ("time_embed_scale", -1, "a number > 0")])
def test_bad_values_are_refused_with_the_allowed_ones(key, value, allowed):
    with pytest.raises(ConfigError, match=allowed):
        model_config("MPDiT-B", **{key: value})


def test_run_ids_of_existing_configs_do_not_see_the_new_keys_at_their_defaults():
    for name in ("MPDiT-B", "SiT-XL/2", "PPF-XL-2"):
        cfg = model_config(name)
        values = cfg.to_dict()
        for key in ("time_embed_scale", "fno_init", "time_patch_sizes", "time_boundaries", "upsample_refine",
                    "upsample_refine_ratio", "level_embed_init"):
            if values[key] == model_config("DiT-S/2").to_dict()[key]:
                del values[key]
        assert cfg.config_hash() == hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]
        assert cfg.replace(time_embed_scale=1).config_hash() != cfg.config_hash()
        assert cfg.replace(fno_init="authors").config_hash() != cfg.config_hash()


def test_guidance_on_the_first_channels_leaves_the_others_conditional():
    from mpdit_bench.engine.sampling import check_options, guided_velocity

    class LabelShift(torch.nn.Module):  # a velocity that depends on the label: cond and null differ
        def forward(self, x, t, y):
            return x * (1 + y.float().view(-1, 1, 1, 1)) + t.view(-1, 1, 1, 1)

    model, x, y = LabelShift(), torch.randn(2, 4, 3, 3), torch.tensor([1, 2])
    null = torch.full_like(y, 5)
    cond, uncond = model(x, torch.full((2,), 0.3), y), model(x, torch.full((2,), 0.3), null)
    every = guided_velocity(model, 4, 5, 2.5)(x, 0.3, y)
    three = guided_velocity(model, 4, 5, 2.5, guided_channels=3)(x, 0.3, y)
    guided = uncond + 2.5 * (cond - uncond)
    assert torch.allclose(every, guided, atol=1e-6)
    assert torch.allclose(three[:, :3], guided[:, :3], atol=1e-6)
    assert torch.equal(three[:, 3:], cond[:, 3:])
    assert check_options({})["cfg_channels"] is None
    with pytest.raises(ConfigError, match="cfg_channels"):
        check_options({"cfg_channels": 0})
