"""experiments/ppflow.yaml through the sweep runner: every run builds, equal compute gives sensible steps."""

from pathlib import Path

import pytest

from mpdit_bench.models import model_config
from mpdit_bench.sweeps.budget import training_flops
from mpdit_bench.sweeps.expand import expand
from mpdit_bench.sweeps.experiment import load_experiment

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "ppflow.yaml"
ARCHS = {"SiT-{}/2 (isotropic)", "MPDiT-{}", "PPF-{}-2", "PPF-{}-3", "MPDiT-{}+PPF-2"}


@pytest.mark.parametrize("scale", ["paper", "cpu"])
def test_every_run_builds_and_equal_compute_orders_the_steps(scale):
    runs = {r.label: r for r in expand(load_experiment(EXPERIMENT), scale)}
    assert set(runs) == {a.format(size) for a in ARCHS for size in ("B", "XL")}
    for size in ("B", "XL"):
        ref = runs[f"SiT-{size}/2 (isotropic)"]
        assert ref.group == size and ref.model == f"SiT-{size}/2"
        ref_flops = training_flops(ref, str(EXPERIMENT))
        flops = {}
        for arch in ARCHS:
            run = runs[arch.format(size)]
            assert run.group == size and run.train["global_batch"] == ref.train["global_batch"]
            schedule = run.model_config["time_patch_sizes"]
            if schedule:  # one training proportion and one guidance scale per stage
                assert len(run.train["stage_proportions"]) == len(schedule) == len(run.sample["cfg_scale"])
                assert model_config(run.model).time_patch_sizes == tuple(schedule)
            flops[arch] = training_flops(run, str(EXPERIMENT))
            if run is not ref:  # every pyramid is cheaper per sample, so it trains longer
                assert run.train["steps"] > ref.train["steps"]
                assert run.train["steps"] * flops[arch] == pytest.approx(ref.train["steps"] * ref_flops,
                                                                          rel=0.06)  # rounding of small cpu step counts
        assert flops["PPF-{}-3"] < flops["PPF-{}-2"] < flops["SiT-{}/2 (isotropic)"]
    if scale == "paper":
        assert runs["SiT-B/2 (isotropic)"].train["steps"] == 400000
        assert runs["SiT-B/2 (isotropic)"].train["global_batch"] == 256 and runs["PPF-B-3"].sample["num"] == 50000
