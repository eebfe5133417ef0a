"""Config keys of the PPFlow patch schedule: parsing, canonical form and validation errors."""

import pytest
import yaml

import mpdit_bench.models  # noqa: F401  (registers components before configs are validated)
from mpdit_bench.config import ConfigError, ModelConfig, parse_set
from mpdit_bench.models import model_config

PPF3 = dict(time_patch_sizes=["4x4", "2x4", "2x2"], time_boundaries=[0.5, 0.25])


def test_patch_shapes_are_canonicalised():
    cfg = ModelConfig.from_dict(dict(time_patch_sizes=[4, [2, 4], "2X2"], time_boundaries=[0.5, 0.25]))
    assert cfg.time_patch_sizes == ("4x4", "2x4", "2x2")
    assert cfg.time_boundaries == (0.5, 0.25)


def test_schedule_round_trips_through_yaml_and_changes_the_hash():
    cfg = ModelConfig.from_dict(PPF3)
    again = ModelConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg and again.config_hash() == cfg.config_hash()
    assert cfg.config_hash() != ModelConfig().config_hash()
    assert cfg.config_hash() != cfg.replace(time_boundaries=[0.6, 0.25]).config_hash()


def test_schedule_free_hash_is_unchanged_by_the_new_keys():
    # Run ids of existing experiments are config hashes: adding the schedule keys must not move them.
    assert model_config("MPDiT-B").config_hash() == "8c98f84c068d"


def test_set_overrides_parse_patch_shapes():
    values = parse_set(["time_patch_sizes=[4x4,2x2]", "time_boundaries=[0.5]"])
    cfg = model_config("SiT-B/2", **values)
    assert cfg.time_patch_sizes == ("4x4", "2x2")


@pytest.mark.parametrize("values, key", [
    (dict(time_patch_sizes=["4by4", "2x2"], time_boundaries=[0.5]), "time_patch_sizes"),
    (dict(time_patch_sizes="4x4", time_boundaries=[0.5]), "time_patch_sizes"),
    (dict(time_patch_sizes=["4x4", "2x2"], time_boundaries=0.5), "time_boundaries"),
    (dict(time_patch_sizes=["4x4", "2x2"], time_boundaries=["a"]), "time_boundaries"),
    (dict(time_patch_sizes=[], time_boundaries=[0.5]), "time_boundaries"),
    (dict(time_patch_sizes=["2x2"], time_boundaries=[]), "time_patch_sizes"),
    (dict(time_patch_sizes=["4x4", "4x4"], time_boundaries=[0.5]), "time_patch_sizes"),
    (dict(time_patch_sizes=["2x2", "4x4"], time_boundaries=[0.5]), "time_patch_sizes"),
    (dict(time_patch_sizes=["4x4", "4x2"], time_boundaries=[0.5]), "time_patch_sizes"),  # last != base 2x2
    (dict(time_patch_sizes=["6x6", "2x2"], time_boundaries=[0.5]), "time_patch_sizes"),  # 6 does not divide 32
    (dict(time_patch_sizes=["3x4", "2x2"], time_boundaries=[0.5]), "time_patch_sizes"),  # 3 not a multiple of 2
    (dict(time_patch_sizes=["4x4", "2x2"], time_boundaries=[0.5, 0.25]), "time_boundaries"),
    (dict(time_patch_sizes=["4x4", "2x4", "2x2"], time_boundaries=[0.25, 0.5]), "time_boundaries"),
    (dict(time_patch_sizes=["4x4", "2x2"], time_boundaries=[1.0]), "time_boundaries"),
    (dict(time_patch_sizes=["4x4", "2x2"], time_boundaries=[0.0]), "time_boundaries"),
])
def test_bad_schedules_name_the_key(values, key):
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict(values, source="test.yaml")
    assert err.value.key == key
    assert "test.yaml" in str(err.value) and "allowed" in str(err.value)


def test_multi_level_schedules_must_be_square():
    with pytest.raises(ConfigError) as err:
        model_config("MPDiT-B", time_patch_sizes=["8x8", "4x8", "4x4"], time_boundaries=[0.5, 0.25])
    assert err.value.key == "time_patch_sizes" and "square" in str(err.value)
    ok = model_config("MPDiT-B", time_patch_sizes=["8x8", "4x4"], time_boundaries=[0.5])
    assert ok.time_patch_sizes == ("8x8", "4x4")
