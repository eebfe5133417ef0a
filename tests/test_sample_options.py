"""One parser of the sampling options the `sample` command takes as flags and a run's YAML holds as values."""

import pytest

from mpdit_bench.config import ConfigError
from mpdit_bench.engine.sampling import parse_sample_options
from mpdit_bench.sweeps.pipeline import sample_command, sample_options


def test_flag_text_and_yaml_values_give_the_same_options():
    flags = parse_sample_options({"cfg_scale": "1.0,3.0", "guidance_interval": "0.1,0.9", "labels": "7",
                                  "steps": None})
    yaml = parse_sample_options({"cfg_scale": [1.0, 3.0], "guidance_interval": [0.1, 0.9], "labels": 7,
                                 "steps": None})
    assert flags == yaml == {"cfg_scale": [1.0, 3.0], "guidance_interval": [0.1, 0.9], "labels": 7, "steps": None}
    assert parse_sample_options({"cfg_scale": "4"})["cfg_scale"] == 4.0
    assert parse_sample_options({"cfg_scale": [4]})["cfg_scale"] == 4  # one scale for every stage
    assert parse_sample_options({"labels": "balanced"})["labels"] == "balanced"


def test_the_sweep_passes_a_run_the_options_its_command_would_parse(tmp_path):
    class Spec:
        sample = {"num": 4, "cfg_scale": [1.5], "labels": "3", "guidance_interval": [0.0, 0.5]}

    cmd = sample_command(Spec(), tmp_path)
    as_flags = {key: cmd[cmd.index(flag) + 1] for key, flag in
                (("cfg_scale", "--cfg-scale"), ("labels", "--labels"), ("guidance_interval", "--guidance-interval"))}
    assert sample_options(Spec.sample) == parse_sample_options(as_flags)


def test_text_that_is_not_numbers_names_the_flag():
    with pytest.raises(ConfigError, match=r"--cfg-scale.*'1,x'.*one per stage"):
        parse_sample_options({"cfg_scale": "1,x"})
    with pytest.raises(ConfigError, match=r"--guidance-interval.*t_lo,t_hi"):
        parse_sample_options({"guidance_interval": "a,b"})
