"""A researcher's own component, in a module outside the package, used through `plugins:`."""

from pathlib import Path

import pytest
import yaml

from _data import needs_fashion_mnist
from _tiny import tiny_run
from mpdit_bench import registry
from mpdit_bench.config import ConfigError
from mpdit_bench.counting import count_config
from mpdit_bench.engine.run_config import validate_run_config
from mpdit_bench.models import model_config

PLUGIN = Path(__file__).parent / "plugin_example" / "nearest_upsample.py"


def _run_with_plugin(**train):
    run = tiny_run(**train)
    run["plugins"] = [str(PLUGIN)]
    run["model_overrides"]["upsample"] = "linear_nearest"
    return run


def test_a_plugin_component_is_validated_counted_and_kept_in_the_run_config():
    run = validate_run_config(_run_with_plugin())
    assert run["plugins"] == [str(PLUGIN)] and "linear_nearest" in registry.names("upsample")
    cfg = model_config(run["model"], **run["model_overrides"], in_channels=1, num_classes=10, input_size=32)
    counts = count_config(cfg, cross_check=False)
    linear = count_config(cfg.replace(upsample="linear"), cross_check=False)
    # the component's own flops() enters the analytic count, and fvcore's true count moves by as much
    saved = linear["gflops_analytic"] - counts["gflops_analytic"]
    assert saved > 0 and saved == pytest.approx(linear["gflops"] - counts["gflops"], rel=1e-6)


def test_a_missing_plugin_is_refused_naming_the_key_and_value(tmp_path):
    run = tiny_run()
    run["plugins"] = [str(tmp_path / "nowhere.py")]
    with pytest.raises(ConfigError, match=r"key 'plugins' = '.*nowhere\.py'.*no such file"):
        validate_run_config(run, "run.yaml")
    run["plugins"] = ["no_such_module_xyz"]
    with pytest.raises(ConfigError, match="ModuleNotFoundError"):
        validate_run_config(run, "run.yaml")
    run["plugins"] = "not a list"
    with pytest.raises(ConfigError, match="a list of module names"):
        validate_run_config(run, "run.yaml")


@needs_fashion_mnist
def test_training_with_a_plugin_component_writes_it_into_the_run(tmp_path):
    from mpdit_bench.engine.train import train

    summary = train(_run_with_plugin(steps=2), tmp_path)
    assert summary["final_step"] == 2
    recorded = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert recorded["plugins"] == [str(PLUGIN)] and recorded["model_config"]["upsample"] == "linear_nearest"
