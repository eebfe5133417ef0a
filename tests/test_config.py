"""Bad configurations are refused before any model is built, naming key, value and what is allowed."""

import pytest

from mpdit_bench.config import ConfigError, ModelConfig, parse_set
from mpdit_bench.models import model_config

BASE = dict(depths=[2, 1], patch_sizes=[4, 2], hidden_size=64, num_heads=4, class_tokens=2,
            modulation="shared", time_embedder="fno", time_embedder_layers=3, input_size=16)

BAD = [  # (override, key named in the message, fragment of the allowed values)
    (dict(num_heads=5), "num_heads", "divisor of hidden_size=64"),
    (dict(num_heads=0), "num_heads", ">= 1"),
    (dict(hidden_size=66, num_heads=2), "hidden_size", "multiple of 4"),
    (dict(hidden_size="wide"), "hidden_size", "an integer"),
    (dict(hidden_size=64.0), "hidden_size", "an integer"),
    (dict(depths=[2, 1, 1]), "depths", "one block count per level"),
    (dict(depths=[2, 0]), "depths", "positive block counts"),
    (dict(depths=4), "depths", "a list of integers"),
    (dict(patch_sizes=[2, 4]), "patch_sizes", "strictly decreasing"),
    (dict(patch_sizes=[4, 4]), "patch_sizes", "strictly decreasing"),
    (dict(patch_sizes=[6, 4], input_size=24), "patch_sizes", "6 is not a multiple of 4"),
    (dict(patch_sizes=[3], depths=[2], input_size=16), "patch_sizes", "dividing the latent side"),
    (dict(patch_sizes=[]), "patch_sizes", "non-empty"),
    (dict(upsample="bilinear"), "upsample", "conv_transpose, linear"),
    (dict(upsample_refine="deep"), "upsample_refine", "conv, linear, mlp, none"),
    (dict(upsample_refine_ratio=0), "upsample_refine_ratio", ">= 1"),
    (dict(upsample_refine_ratio=2.5), "upsample_refine_ratio", "an integer"),
    (dict(time_embedder="fourier"), "time_embedder", "fno, mlp"),
    (dict(modulation="film"), "modulation", "per_block, shared"),
    (dict(time_embedder_layers=0), "time_embedder_layers", ">= 1"),
    (dict(class_tokens=-1), "class_tokens", ">= 0"),
    (dict(mlp_ratio=0), "mlp_ratio", "> 0"),
    (dict(learn_sigma="yes"), "learn_sigma", "true or false"),
    (dict(in_channels=0), "in_channels", ">= 1"),
    (dict(num_classes=0), "num_classes", ">= 1"),
    (dict(refine_depth=3), "refine_depth", "[1, 2]"),
    (dict(patch_sizes=[8, 4, 2], depths=[1, 1, 1], refine_depth=1), "refine_depth", "only with two levels"),
    (dict(dropout=0.1), "dropout", "one of the keys depths, patch_sizes"),
]


@pytest.mark.parametrize("override,key,allowed", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_config_is_refused_with_key_value_and_allowed(override, key, allowed):
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_dict({**BASE, **override}, source="test.yaml")
    message = str(info.value)
    assert info.value.key == key
    assert message.startswith("test.yaml: ")
    assert f"'{key}'" in message and allowed in message
    assert repr(override.get(key, info.value.value)) in message


def test_good_config_is_accepted_and_refine_depth_sets_two_levels():
    cfg = ModelConfig.from_dict({**BASE, "depths": [5, 1], "refine_depth": 2})
    assert cfg.depths == (4, 2) and cfg.refine_depth is None


def test_refine_depth_turns_an_isotropic_preset_into_mpdit():
    cfg = model_config("DiT-B/2", patch_sizes=[4, 2], refine_depth=4)
    assert cfg.depths == (8, 4) and cfg.patch_sizes == (4, 2)


def test_preset_overrides_and_resolution():
    assert model_config("b", refine_depth=4).depths == (8, 4)
    assert model_config("xl").depths == (22, 6)
    assert model_config("MPDiT-XL", resolution=512).input_size == 64
    with pytest.raises(ConfigError, match="'model'.*MPDiT-B"):
        model_config("MPDiT-Z")
    with pytest.raises(ConfigError, match="'resolution'"):
        model_config("b", resolution=250)


def test_parse_set_reads_lists_tuples_bools_and_numbers():
    got = parse_set(["patch_sizes=8,4,2", "depths=[18,6,4]", "refine_depth=(4)", "learn_sigma=true",
                     "mlp_ratio=2.5", "upsample=conv_transpose"])
    assert got == {"patch_sizes": [8, 4, 2], "depths": [18, 6, 4], "refine_depth": [4],
                   "learn_sigma": True, "mlp_ratio": 2.5, "upsample": "conv_transpose"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["refine_depth"])


def test_config_hash_is_stable_and_sensitive():
    a, b = model_config("b"), model_config("b", refine_depth=4)
    assert a.config_hash() == model_config("MPDiT-B").config_hash()
    assert a.config_hash() != b.config_hash()
