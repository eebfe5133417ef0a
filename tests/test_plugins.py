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


class _FakeEntryPoint:
    def __init__(self, name, value, load):
        self.name, self.value, self.load = name, value, load


def test_installed_plugins_of_the_entry_point_group_are_loaded_once(monkeypatch):
    from mpdit_bench import plugins

    loads = []
    seen_groups = []

    def entry_points(group):
        seen_groups.append(group)
        return [_FakeEntryPoint("lab_parts", "lab.parts", lambda: loads.append("lab.parts"))]

    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    monkeypatch.setattr(plugins.metadata, "entry_points", entry_points)
    plugins.load([])
    plugins.load([str(PLUGIN)])
    validate_run_config(_run_with_plugin())  # a run config loads plugins too: the installed ones stay loaded once
    assert loads == ["lab.parts"] and seen_groups == [plugins.ENTRY_POINT_GROUP]


def test_a_broken_installed_plugin_is_named_with_its_group(monkeypatch):
    from mpdit_bench import plugins

    def broken():
        raise ImportError("No module named 'lab'")

    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    monkeypatch.setattr(plugins.metadata, "entry_points",
                        lambda group: [_FakeEntryPoint("lab_parts", "lab.parts", broken)])
    with pytest.raises(ConfigError, match=r"mpdit_bench\.plugins:lab_parts.*'lab\.parts'.*ImportError"):
        plugins.load([])


def test_a_checkpoint_loads_the_plugins_its_run_config_lists(tmp_path, monkeypatch):
    from mpdit_bench import checkpoint, plugins

    calls = []
    monkeypatch.setattr(plugins, "load", lambda items, key, source: calls.append((list(items), key, source)))
    state = {"format": checkpoint.FORMAT, "step": 0, "model": {}, "model_config": {},
             "run_config": {"model": "MPDiT-B", "plugins": [str(PLUGIN)]}}
    path = checkpoint.save_atomic(state, tmp_path / "last.pt")
    checkpoint.load(path)
    assert calls == [([str(PLUGIN)], "run_config.plugins", str(path))]
    checkpoint.save_atomic({**state, "run_config": {"model": "MPDiT-B"}}, path)
    checkpoint.load(path)
    assert len(calls) == 1  # no list: nothing to load


PLUGIN_COMMANDS = (["models"], ["flops"], ["components"], ["tables"], ["sweep"], ["search"], ["report"], ["train"],
                   ["sample"], ["convert"], ["bench", "train"], ["bench", "sample"])


@pytest.mark.parametrize("command", PLUGIN_COMMANDS, ids=" ".join)
def test_every_command_that_builds_a_model_takes_plugin(command):
    from typer.testing import CliRunner

    from mpdit_bench.cli import app

    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--plugin" in result.stdout


def test_plugin_option_registers_before_the_model_is_checked(tmp_path):
    from typer.testing import CliRunner

    from mpdit_bench.cli import app

    runner = CliRunner()
    # --plugin after --set: the component exists by the time the override is checked
    done = runner.invoke(app, ["flops", "-m", "MPDiT-B", "--set", "upsample=linear_nearest", "--no-cross-check",
                               "--json", "--plugin", str(PLUGIN)])
    assert done.exit_code == 0, done.output
    assert '"upsample": "linear_nearest"' in done.stdout
    missing = runner.invoke(app, ["models", "--plugin", str(tmp_path / "nowhere.py")])
    assert missing.exit_code == 2 and "'--plugin'" in missing.output and "nowhere.py" in missing.output


def test_sweep_workers_get_the_plugins_of_the_command_line():
    from mpdit_bench.sweeps.runner import worker_command

    cmd = worker_command("exp.yaml", "cpu", "results", plugins=["/lab/parts.py", "lab.more"])
    assert cmd[cmd.index("/lab/parts.py") - 1] == "--plugin" and cmd[cmd.index("lab.more") - 1] == "--plugin"
    assert "--plugin" not in worker_command("exp.yaml", "cpu", "results")
