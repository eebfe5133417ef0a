"""Import of checkpoints in their sources' own formats (../shared/fixtures): the imported model is the source's
function, plain and guided; train and released files give the same model; bad files are refused by name."""

from __future__ import annotations

import datetime
import pickle
from pathlib import Path

import pytest
import torch

from mpdit_bench.config import ModelConfig
from mpdit_bench import checkpoint
from mpdit_bench.engine.sampling import check_options, guided_velocity, load_sampling_model, sample_indices
from mpdit_bench.imports import ImportRefused, import_checkpoint, write_suite_checkpoint

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
ATOL = 1e-5  # float32 rounding: the sources' own outputs move by ~1e-8 with the batch's composition
CASES = [("mpdit_tiny", "0000001.pt"), ("mpdit_tiny_mlp_time", "0000001.pt"), ("sit_tiny", "released.pt"),
         ("sit_tiny", "train_ckpt.pt"), ("ppflow_tiny", "released.pt"), ("ppflow_tiny", "train_ckpt.pt")]

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"source-format fixtures not found at {FIXTURES}")


def fixture(folder: str, name: str) -> Path:
    return FIXTURES / folder / name


def reference(folder: str) -> dict:
    return torch.load(fixture(folder, "reference.pt"), weights_only=True)


def imported(folder: str, name: str):
    """(model, config, checkpoint dict); the tiny fixtures' head count is in their meta (64 wide, 2 heads)."""
    heads = reference(folder)["meta"]["constructor_kwargs"]["num_heads"]
    ckpt = import_checkpoint(fixture(folder, name), num_heads=heads)
    model, cfg = load_sampling_model(ckpt, use_ema=True, device=torch.device("cpu"))
    return model, cfg, ckpt


def source_time(ckpt: dict, t: torch.Tensor) -> torch.Tensor:
    """The suite's t for the source's t (SiT and PPFlow run t = 0 noise)."""
    return t if ckpt["imported_from"]["source"] == "mpdit" else 1 - t


def source_output(ckpt: dict, v: torch.Tensor) -> torch.Tensor:
    """The source's prediction from the suite's velocity (SiT and PPFlow predict data - noise)."""
    return v if ckpt["imported_from"]["source"] == "mpdit" else -v


def suite_velocity(model, cfg, x, t, y):
    with torch.no_grad():
        return model(x, t, y)[:, :cfg.in_channels]


# ---- the imported model is the source's function ----------------------------------------------------------
@pytest.mark.parametrize("folder,name", CASES)
def test_plain_outputs_match_the_source(folder, name):
    model, cfg, ckpt = imported(folder, name)
    ref = reference(folder)
    cases = ref["per_t"] if "per_t" in ref else [{"t": ref["t"], "out_wo_cfg": ref["out"]}]
    for case in cases:
        out = source_output(ckpt, suite_velocity(model, cfg, ref["x"], source_time(ckpt, case["t"]), ref["y"]))
        assert out.shape == case["out_wo_cfg"].shape
        err = (out - case["out_wo_cfg"]).abs().max().item()
        assert err < ATOL, f"{folder}/{name} t={case['t'].tolist()}: max abs error {err:.2e}"


@pytest.mark.parametrize("folder,name", CASES)
def test_guided_outputs_match_the_source_with_its_guidance(folder, name):
    """The suite's guidance with the checkpoint's sampling defaults (cfg_channels, per-stage scales) gives the
    source's forward_with_cfg: guided channels, the rest conditional (the source's first half)."""
    model, cfg, ckpt = imported(folder, name)
    ref = reference(folder)
    defaults = check_options((ckpt.get("run_config") or {}).get("sample") or {})
    cases = ref["per_t"] if "per_t" in ref else [{"cfg": ref["cfg"]}]
    for case in cases:
        c = case["cfg"]
        scale = c.get("cfg_scales", c.get("cfg_scale"))
        B = c["x_in"].shape[0] // 2
        v = guided_velocity(model, cfg.in_channels, cfg.num_classes, scale, guided_channels=defaults["cfg_channels"])
        with torch.no_grad():  # the suite's guidance takes one t per call: one row at a time
            rows = [v(c["x_in"][i:i + 1], float(source_time(ckpt, c["t_in"][i])), c["y_in"][i:i + 1])
                    for i in range(B)]
        out = source_output(ckpt, torch.cat(rows))
        err = (out - c["out"][:B]).abs().max().item()
        assert err < ATOL, f"{folder}/{name} guided: max abs error {err:.2e}"
        k = defaults["cfg_channels"]
        if k is not None:  # the source's halves: guided channels equal, the others conditional / unconditional
            assert torch.allclose(c["out"][:B, :k], c["out"][B:, :k], atol=1e-6)
            assert not torch.allclose(c["out"][:B, k:], c["out"][B:, k:], atol=1e-4)


def test_sources_guide_the_channels_they_guide_and_sample_with_their_ode_default():
    for folder, name, channels, sampler, grid in (("sit_tiny", "released.pt", 3, "dopri5", "steps"),
                                                  ("ppflow_tiny", "released.pt", 3, "heun2", "points"),
                                                  ("mpdit_tiny", "0000001.pt", None, "euler", "steps")):
        ckpt = imported(folder, name)[2]
        options = check_options((ckpt.get("run_config") or {}).get("sample") or {})
        assert (options["cfg_channels"], options["sampler"], options["grid"]) == (channels, sampler, grid)
    ppf = imported("ppflow_tiny", "train_ckpt.pt")[2]
    assert ppf["run_config"]["sample"]["cfg_scale"] == [1.5, 3.0]  # args.cfg_scales, coarse stage first


def test_imported_architectures_are_read_from_the_tensors():
    for folder, name in CASES:
        cfg = imported(folder, name)[1]
        kwargs = reference(folder)["meta"]["constructor_kwargs"]
        assert cfg.hidden_size == kwargs["hidden_size"] and cfg.num_classes == kwargs["num_classes"]
        assert cfg.input_size == kwargs["input_size"] and cfg.time_embed_scale == 1.0
    sit_cfg = imported("sit_tiny", "released.pt")[1]
    assert sit_cfg.learn_sigma and sit_cfg.depths == (2,) and sit_cfg.patch_sizes == (2,)
    ppf = imported("ppflow_tiny", "released.pt")[1]
    assert ppf.time_patch_sizes == ("4x4", "2x2") and ppf.time_boundaries == (0.5,)
    mp = imported("mpdit_tiny", "0000001.pt")[1]
    assert (mp.depths, mp.patch_sizes, mp.class_tokens, mp.time_embedder, mp.fno_init) == \
        ((2, 2), (4, 2), 4, "fno", "authors")
    assert imported("mpdit_tiny_mlp_time", "0000001.pt")[1].time_embedder == "mlp"


# ---- train checkpoint and released file: one model -----------------------------------------------------------
@pytest.mark.parametrize("folder", ["sit_tiny", "ppflow_tiny"])
def test_train_checkpoint_and_released_file_import_to_the_same_model(folder):
    released, train = imported(folder, "released.pt")[2], imported(folder, "train_ckpt.pt")[2]
    assert released["model_config"] == train["model_config"]
    assert released["ema"].keys() == train["ema"].keys()
    for key, value in released["ema"].items():
        assert torch.equal(value, train["ema"][key]), key
    # the train checkpoint's online weights are its own (one AdamW step away from the EMA)
    assert any(not torch.equal(train["model"][k], train["ema"][k]) for k in train["ema"])


def test_mpdit_train_checkpoint_keeps_step_and_online_weights():
    ckpt = imported("mpdit_tiny", "0000001.pt")[2]
    with torch.serialization.safe_globals([__import__("argparse").Namespace]):
        raw = torch.load(fixture("mpdit_tiny", "0000001.pt"), weights_only=True)
    assert ckpt["step"] == raw["train_steps"]
    assert torch.equal(ckpt["model"]["patch_embed.proj.weight"], raw["model"]["x_embedder.proj.weight"])
    assert torch.equal(ckpt["ema"]["time_embed.spectral.1.weight_imag"], raw["ema"]["t_embedder.conv1.weights_imag"])
    assert ckpt["imported_from"]["args"]["model"] == raw["args"].model


# ---- refusals: named file, stated reason, nothing written ---------------------------------------------------------
def refused(path: Path, tmp_path: Path, match: str, **kwargs) -> ImportRefused:
    out = tmp_path / "out.pt"
    with pytest.raises(ImportRefused, match=match) as info:
        write_suite_checkpoint(path, out, num_heads=kwargs.pop("num_heads", 2), **kwargs)
    assert str(path) in str(info.value)
    assert not out.exists()
    return info.value


def test_a_truncated_file_is_refused(tmp_path):
    data = fixture("sit_tiny", "released.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    refused(cut, tmp_path, "not readable as a torch checkpoint.*truncated")


def test_a_tampered_file_is_refused_with_the_keys_listed(tmp_path):
    state = torch.load(fixture("sit_tiny", "released.pt"), weights_only=True)
    renamed = dict(state)
    renamed["blocks.1.attn.qkv.w"] = renamed.pop("blocks.1.attn.qkv.weight")
    torch.save(renamed, tmp_path / "renamed.pt")
    err = refused(tmp_path / "renamed.pt", tmp_path, "missing keys")
    assert "'blocks.1.attn.qkv.weight'" in str(err) and "unexpected keys ['blocks.1.attn.qkv.w']" in str(err)
    reshaped = dict(state)
    reshaped["blocks.0.mlp.fc2.weight"] = reshaped["blocks.0.mlp.fc2.weight"][:, :128]
    torch.save(reshaped, tmp_path / "reshaped.pt")
    refused(tmp_path / "reshaped.pt", tmp_path, r"wrong shape.*blocks.0.mlp.fc2.weight \(64, 128\)")


def test_a_train_checkpoint_with_an_extra_entry_is_refused(tmp_path):
    with torch.serialization.safe_globals([__import__("argparse").Namespace]):
        ckpt = torch.load(fixture("ppflow_tiny", "train_ckpt.pt"), weights_only=True)
    ckpt["scheduler"] = {"last_epoch": 3}
    torch.save(ckpt, tmp_path / "extra.pt")
    refused(tmp_path / "extra.pt", tmp_path, "ppflow train.py checkpoint has the keys")


class Payload:
    """An arbitrary object in a file: import must refuse it without building it."""

    built = 0

    def __init__(self):
        self.payload = "data"

    def __setstate__(self, state):
        Payload.built += 1


def test_files_in_no_source_format_are_refused(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    refused(text, tmp_path, "not readable as a torch checkpoint")
    torch.save({"ema": Payload()}, tmp_path / "object.pt")  # a global that is not allow-listed: never built
    refused(tmp_path / "object.pt", tmp_path, "not readable as a torch checkpoint.*Unpickl")
    assert Payload.built == 0
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump(datetime.date(2020, 1, 1), f)
    refused(tmp_path / "plain.pkl", tmp_path, "not readable as a torch checkpoint")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    refused(tmp_path / "foreign.pt", tmp_path, "tensors of none of the sources")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    refused(tmp_path / "list.pt", tmp_path, "in none of the formats import reads.*a list")


def test_a_suite_checkpoint_is_refused(tmp_path):
    write_suite_checkpoint(fixture("sit_tiny", "released.pt"), tmp_path / "suite.pt", num_heads=2)
    refused(tmp_path / "suite.pt", tmp_path, "already a suite checkpoint")


def test_an_architecture_other_than_expected_is_refused(tmp_path):
    err = refused(fixture("sit_tiny", "released.pt"), tmp_path, "expect='SiT-XL/2'", expect="SiT-XL/2")
    assert "'hidden_size': 64" in str(err) and "'hidden_size': 1152" in str(err)
    refused(fixture("sit_tiny", "released.pt"), tmp_path, "source='ppflow' but the tensors are sit's",
            source="ppflow")
    refused(fixture("sit_tiny", "released.pt"), tmp_path, "do not show the number of attention heads",
            num_heads=None)


# ---- the imported checkpoint is a suite checkpoint ----------------------------------------------------------------
@pytest.mark.parametrize("folder,name", [("mpdit_tiny", "0000001.pt"), ("sit_tiny", "released.pt"),
                                         ("ppflow_tiny", "train_ckpt.pt")])
def test_imported_checkpoint_loads_and_samples_with_the_suites_code(folder, name, tmp_path):
    out = tmp_path / "imported.pt"
    summary = write_suite_checkpoint(fixture(folder, name), out, num_heads=2)
    state = checkpoint.load(out)
    assert summary["config_hash"] == ModelConfig.from_dict(state["model_config"]).config_hash()
    model, cfg = load_sampling_model(state, use_ema=True, device=torch.device("cpu"))
    options = check_options({**state.get("run_config", {}).get("sample", {}), "steps": 2, "batch_size": 2})
    x = sample_indices(model, cfg, [0, 1], torch.tensor([1, 3]), options, torch.device("cpu"))
    assert x.shape == (2, cfg.in_channels, cfg.input_size, cfg.input_size) and torch.isfinite(x).all()


def test_an_imported_sit_starts_a_ppflow_model_and_a_run(tmp_path):
    from mpdit_bench.engine.train import init_weights_from
    from mpdit_bench.models import build_model
    from mpdit_bench.ppflow.convert import convert_checkpoint

    write_suite_checkpoint(fixture("sit_tiny", "released.pt"), tmp_path / "sit.pt", num_heads=2)
    result = convert_checkpoint(tmp_path / "sit.pt", tmp_path / "ppf.pt", levels=2)
    cfg = ModelConfig.from_dict(result["model_config"])
    model, ema = build_model(cfg), build_model(cfg)
    start = {"init_from": str(tmp_path / "ppf.pt"), "init_source": None, "seed": 0}
    init_weights_from(start, model, ema, cfg, tmp_path)
    sit_model, sit_cfg = load_sampling_model(checkpoint.load(tmp_path / "sit.pt"), True, torch.device("cpu"))
    x, y = torch.randn(2, 4, 16, 16), torch.tensor([0, 5])
    t = torch.full((2,), 0.2)  # the finest stage is the source model itself
    with torch.no_grad():
        assert torch.allclose(ema(x, t, y), sit_model(x, t, y), atol=1e-6)


def test_a_published_size_is_read_without_being_told_its_heads(tmp_path):
    """A SiT-S/2-shaped file in SiT's released format (random weights): width 384 means 6 heads."""
    from mpdit_bench.imports import sit
    from mpdit_bench.models import build_model, model_config

    cfg = model_config("SiT-S/2", time_embed_scale=1)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in build_model(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    state = {theirs: torch.randn(shapes[ours], generator=g) * 0.02 for theirs, ours in sit.source_keys(cfg).items()}
    torch.save(state, tmp_path / "SiT-S-2.pt")
    summary = write_suite_checkpoint(tmp_path / "SiT-S-2.pt", tmp_path / "imported.pt")
    assert summary["preset"] == "SiT-S/2" and summary["model_config"] == cfg.to_dict()
    again = write_suite_checkpoint(tmp_path / "SiT-S-2.pt", tmp_path / "imported.pt", expect="SiT-S/2")
    assert again["preset"] == "SiT-S/2"
    refused(tmp_path / "SiT-S-2.pt", tmp_path, "where SiT-B/2 has", expect="SiT-B/2", num_heads=None)


def test_mpdit_agrees_with_the_authors_float64_run():
    """Their float64 run (FFT part in float32 on both sides): agreement far below float32 rounding."""
    model, cfg, ckpt = imported("mpdit_tiny", "0000001.pt")
    ref = reference("mpdit_tiny")
    with torch.no_grad():
        out = model.double()(ref["x"].double(), ref["t"].double(), ref["y"])
    assert out.dtype == torch.float64 and (out - ref["out_f64"]).abs().max() < 1e-9


def test_sit_learned_sigma_channels_follow_the_velocity_unchanged():
    model, cfg, ckpt = imported("sit_tiny", "released.pt")
    ref = reference("sit_tiny")
    with torch.no_grad():
        out = model(ref["x"], 1 - ref["t"], ref["y"])  # all 2C channels
    theirs = ref["unpatchified_all_channels"]
    assert out.shape == theirs.shape
    assert (-out[:, :4] - theirs[:, :4]).abs().max() < ATOL  # the velocity, sign converted
    assert (out[:, 4:] - theirs[:, 4:]).abs().max() < ATOL  # sigma channels as the source emits them


def test_a_train_checkpoint_named_by_its_step_keeps_it_and_the_source_is_never_overwritten(tmp_path):
    named = tmp_path / "0400000.pt"
    named.write_bytes(fixture("sit_tiny", "train_ckpt.pt").read_bytes())
    assert import_checkpoint(named, num_heads=2)["step"] == 400000
    with pytest.raises(ImportRefused, match="would overwrite the source"):
        write_suite_checkpoint(named, named, num_heads=2)
    assert named.read_bytes() == fixture("sit_tiny", "train_ckpt.pt").read_bytes()
