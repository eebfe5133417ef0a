"""The one key-table validator: unknown keys are refused with the closest known key suggested."""

import pytest

from mpdit_bench.validation import ConfigError, Key, check_section, did_you_mean

KEYS = {"steps": Key(10, lambda v: isinstance(v, int), "an integer"),
        "lr": Key(1e-4, lambda v: isinstance(v, float), "a number")}


def test_a_misspelled_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError) as err:
        check_section({"step": 5}, KEYS, "run.yaml", "train")
    message = str(err.value)
    assert "run.yaml" in message and "'train.step' = 5" in message and "did you mean 'steps'?" in message


def test_no_suggestion_when_nothing_is_close():
    assert did_you_mean("zzzz", KEYS) == ""
    with pytest.raises(ConfigError, match="allowed: one of the keys steps, lr"):
        check_section({"zzzz": 5}, KEYS, "run.yaml", "train")
