"""Import of the MPDiT authors' three-level network (their class MPDiTv2, models/mpdit.py) from train.py's
checkpoint {model, ema, opt, epoch, train_steps, args}: their tensor names, the function, the refusals, and
the imported checkpoint through the suite's counting and sampling."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mpdit_bench import checkpoint
from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench.counting.measure import count_config
from mpdit_bench.engine.sampling import check_options, load_sampling_model, sample_indices
from mpdit_bench.imports import ImportRefused, import_checkpoint, write_suite_checkpoint
from mpdit_bench.imports import mpdit_authors
from mpdit_bench.imports.common import matching_preset
from mpdit_bench.imports.export import random_suite_model, source_checkpoint, write_source_checkpoint
from mpdit_bench.models import build_model, model_config

# latent 16: grids 2, 4, 8 at patches 8, 4, 2; width 32, 2 heads, 10 classes, 2 class tokens
TINY = dict(depths=[3, 1, 2], hidden_size=32, num_heads=2, input_size=16, num_classes=10, class_tokens=2,
            fno_init="authors", time_embed_scale=1)
ATOL = 1e-6  # float32: the same weights in the same network; only summation order could differ


def tiny(**changes) -> ModelConfig:
    return model_config("MPDiTv2-B", **{**TINY, **changes})


# ---- their names, from the MPDiTv2 constructor -----------------------------------------------------------------
# Their DiTBlock holds timm's Attention (qkv, proj) and Mlp (fc1, fc2); its two LayerNorms have no affine.
DIT_BLOCK = ("attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
             "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias")


def their_tiny_v2_names(time_emb: str) -> set[str]:
    """Every state-dict key of MPDiTv2(depth_list=[3, 1, 2], time_emb=..., skip_connection=True)."""
    names = {
        "x_embedder.proj.weight", "x_embedder.proj.bias",
        "x_embedder_lvl1.proj.weight", "x_embedder_lvl1.proj.bias",
        "x_embedder_lvl2.proj.weight", "x_embedder_lvl2.proj.bias",
        "linear_skip_lvl1.weight", "linear_skip_lvl1.bias", "linear_skip_lvl2.weight", "linear_skip_lvl2.bias",
        "y_embedder.embedding_table.weight",
        "pos_embed", "pos_embed_lvl1", "pos_embed_lvl2",
        "time_modulation.1.weight", "time_modulation.1.bias",
        "upsampler_lvl1.proj.weight", "upsampler_lvl1.proj.bias",
        "upsampler_lvl1.refine.weight", "upsampler_lvl1.refine.bias",
        "upsampler_lvl2.proj.weight", "upsampler_lvl2.proj.bias",
        "upsampler_lvl2.refine.weight", "upsampler_lvl2.refine.bias",
        "final_layer.linear.weight", "final_layer.linear.bias",
    }
    for block in ("downsample_blocks.0", "downsample_blocks.1", "downsample_blocks.2", "upsample_blocks_lvl1.0",
                  "upsample_blocks_lvl2.0", "upsample_blocks_lvl2.1"):
        names |= {f"{block}.{part}" for part in DIT_BLOCK}
    if time_emb == "fno":  # FNOTimestepEmbedder(modes=16, width=32): fc0, conv0-2, w0-2, fc1
        names |= {"t_embedder.fc0.weight", "t_embedder.fc0.bias", "t_embedder.fc1.weight", "t_embedder.fc1.bias",
                  "t_embedder.conv0.weights_real", "t_embedder.conv0.weights_imag",
                  "t_embedder.conv1.weights_real", "t_embedder.conv1.weights_imag",
                  "t_embedder.conv2.weights_real", "t_embedder.conv2.weights_imag",
                  "t_embedder.w0.weight", "t_embedder.w0.bias", "t_embedder.w1.weight", "t_embedder.w1.bias",
                  "t_embedder.w2.weight", "t_embedder.w2.bias"}
    else:  # TimestepEmbedder: mlp = Linear(256, D), SiLU, Linear(D, D)
        names |= {"t_embedder.mlp.0.weight", "t_embedder.mlp.0.bias", "t_embedder.mlp.2.weight",
                  "t_embedder.mlp.2.bias"}
    return names


# Shapes their constructor gives (D = 32, C = 4, latent 16, m = 2 tokens, 10 classes + the null row)
THEIR_TINY_SHAPES = {
    "x_embedder.proj.weight": (32, 4, 8, 8), "x_embedder_lvl1.proj.weight": (32, 4, 4, 4),
    "x_embedder_lvl2.proj.weight": (32, 4, 2, 2), "linear_skip_lvl1.weight": (32, 32),
    "pos_embed": (1, 4, 32), "pos_embed_lvl1": (1, 16, 32), "pos_embed_lvl2": (1, 64, 32),
    "y_embedder.embedding_table.weight": (11, 64), "time_modulation.1.weight": (192, 32),
    "upsampler_lvl1.proj.weight": (128, 32), "upsampler_lvl2.proj.weight": (128, 32),
    "upsampler_lvl2.refine.weight": (32, 32), "final_layer.linear.weight": (16, 32),
    "t_embedder.fc0.weight": (32, 1), "t_embedder.conv0.weights_real": (32, 32, 16),
    "t_embedder.w0.weight": (32, 32, 1), "t_embedder.fc1.weight": (32, 32),
    "downsample_blocks.2.attn.qkv.weight": (96, 32), "upsample_blocks_lvl2.1.mlp.fc1.weight": (128, 32),
}


@pytest.mark.parametrize("time_emb", ["fno", "mlp"])
def test_the_export_writes_their_names(time_emb):
    cfg = tiny(time_embedder=time_emb, time_embedder_layers=3 if time_emb == "fno" else 2)
    written = source_checkpoint(cfg, "mpdit", kind="train")
    assert set(written["ema"]) == their_tiny_v2_names(time_emb)
    assert set(written["model"]) == their_tiny_v2_names(time_emb)
    if time_emb == "fno":
        assert {k: tuple(written["ema"][k].shape) for k in THEIR_TINY_SHAPES} == THEIR_TINY_SHAPES
    args = vars(written["args"])
    assert args["model"] == "MPDiTv2" and args["latent_size"] == 16 and args["num_condition_tokens"] == 2


def test_their_model_table_names_the_presets():
    assert mpdit_authors.train_args(model_config("MPDiTv2-XL"))["model"] == "MPDiTv2-XL"
    assert mpdit_authors.train_args(model_config("MPDiT-B"))["model"] == "MPDiT-B/4x"


@pytest.mark.parametrize("size", ["B", "L", "XL"])
def test_a_published_three_level_size_is_read_as_its_preset(size):
    """Full-size tensors on the meta device: the architecture and preset come from the shapes alone."""
    cfg = model_config(f"MPDiTv2-{size}", fno_init="authors", time_embed_scale=1)
    with torch.device("meta"):
        suite = build_model(cfg).state_dict()
    theirs = {k: suite[ours] for k, ours in mpdit_authors.source_keys(cfg).items()}
    args = mpdit_authors.train_args(cfg)
    read = mpdit_authors.architecture(theirs, args, "meta.pt", None, None)
    assert read == cfg and matching_preset(read, mpdit_authors.FAMILY) == f"MPDiTv2-{size}"


# ---- a train.py checkpoint imports to the model it was written from -------------------------------------------
def write_tiny(tmp_path, cfg: ModelConfig | None = None, seed: int = 5):
    cfg = cfg or tiny()
    model = random_suite_model(cfg, seed=seed).eval()
    path = write_source_checkpoint(cfg, "mpdit", tmp_path / "0000100.pt", kind="train", state=model.state_dict())
    return model, cfg, path


@pytest.mark.parametrize("time_emb", ["fno", "mlp"])
def test_a_train_checkpoint_imports_to_the_same_function(time_emb, tmp_path):
    model, cfg, path = write_tiny(tmp_path, tiny(time_embedder=time_emb,
                                                 time_embedder_layers=3 if time_emb == "fno" else 2))
    raw = torch.load(path, weights_only=False)
    assert set(raw) == {"model", "ema", "opt", "epoch", "train_steps", "args"}
    assert isinstance(raw["args"], argparse.Namespace)
    ckpt = import_checkpoint(path, num_heads=2)
    assert ckpt["model_config"] == cfg.to_dict()
    assert ckpt["imported_from"]["source"] == "mpdit" and ckpt["imported_from"]["format"] == "train"
    back, _ = load_sampling_model(ckpt, use_ema=True, device=torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, 4, 16, 16, generator=g), torch.tensor([0, 7, 10])  # 10: the null class
    with torch.no_grad():
        for t in (0.0, 0.3, 0.95):
            tt = torch.full((3,), t)
            out, want = back(x, tt, y), model(x, tt, y)
            assert out.shape == (3, 4, 16, 16) and want.abs().max() > 1e-3
            assert (out - want).abs().max() < ATOL, t


def edited(path: Path, tmp_path: Path, name: str, edit) -> Path:
    """A copy of the train.py file at ``path`` with ``edit(obj)`` applied (its EMA and online weights alike)."""
    obj = torch.load(path, weights_only=False)
    edit(obj)
    out = tmp_path / name
    torch.save(obj, out)
    return out


# ---- their forward, written from its description over their tensor names -------------------------------------
# Independent of the suite's modules: a wrong pairing of same-shaped tensors (skip Linears, upsamplers, the
# levels' blocks) leaves the names and shapes right but changes this function.
def _their_ln_mod(h, shift, scale):
    return F.layer_norm(h, h.shape[-1:], eps=1e-6) * (1 + scale[:, None]) + shift[:, None]


def _their_block(w, name, h, mod, heads):
    shift1, scale1, gate1, shift2, scale2, gate2 = mod
    B, N, D = h.shape
    qkv = F.linear(_their_ln_mod(h, shift1, scale1), w[f"{name}.attn.qkv.weight"], w[f"{name}.attn.qkv.bias"])
    q, k, v = qkv.view(B, N, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
    att = torch.softmax(q @ k.transpose(-1, -2) / (D // heads) ** 0.5, dim=-1) @ v
    att = F.linear(att.transpose(1, 2).reshape(B, N, D), w[f"{name}.attn.proj.weight"], w[f"{name}.attn.proj.bias"])
    h = h + gate1[:, None] * att
    mid = F.gelu(F.linear(_their_ln_mod(h, shift2, scale2), w[f"{name}.mlp.fc1.weight"], w[f"{name}.mlp.fc1.bias"]),
                 approximate="tanh")
    return h + gate2[:, None] * F.linear(mid, w[f"{name}.mlp.fc2.weight"], w[f"{name}.mlp.fc2.bias"])


def _their_patches(w, name, x):
    kernel = w[f"{name}.proj.weight"]
    return F.conv2d(x, kernel, w[f"{name}.proj.bias"], stride=kernel.shape[-1]).flatten(2).transpose(1, 2)


def _their_upsampler(w, name, h, m):
    cond, img = h[:, :m], h[:, m:]
    B, L, D = img.shape
    side = int(L ** 0.5)
    wide = F.linear(img, w[f"{name}.proj.weight"], w[f"{name}.proj.bias"]).view(B, side, side, D, 2, 2)
    fine = F.gelu(wide.permute(0, 1, 4, 2, 5, 3).reshape(B, 4 * L, D), approximate="tanh")
    joined = F.layer_norm(torch.cat([cond, fine], dim=1), (D,), eps=1e-6)
    return F.linear(joined, w[f"{name}.refine.weight"], w[f"{name}.refine.bias"])


def their_v2_forward(w, x, t, y, heads, m):
    """MPDiTv2.forward with time_emb="mlp" and skip_connection=True, on their state dict ``w``."""
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    angles = t[:, None].float() * freqs[None]
    t_freq = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    t_emb = F.linear(F.silu(F.linear(t_freq, w["t_embedder.mlp.0.weight"], w["t_embedder.mlp.0.bias"])),
                     w["t_embedder.mlp.2.weight"], w["t_embedder.mlp.2.bias"])
    mod = F.linear(F.silu(t_emb), w["time_modulation.1.weight"], w["time_modulation.1.bias"]).chunk(6, dim=1)
    D = t_emb.shape[1]
    cond = w["y_embedder.embedding_table.weight"][y].view(len(y), m, D)
    h = torch.cat([cond, _their_patches(w, "x_embedder", x) + w["pos_embed"]], dim=1)
    for level, blocks in ((0, "downsample_blocks"), (1, "upsample_blocks_lvl1"), (2, "upsample_blocks_lvl2")):
        if level:
            h = _their_upsampler(w, f"upsampler_lvl{level}", h, m)
            skip = F.linear(_their_patches(w, f"x_embedder_lvl{level}", x), w[f"linear_skip_lvl{level}.weight"],
                            w[f"linear_skip_lvl{level}.bias"])
            h = torch.cat([h[:, :m], h[:, m:] + skip + w[f"pos_embed_lvl{level}"]], dim=1)
        i = 0
        while f"{blocks}.{i}.attn.qkv.weight" in w:
            h = _their_block(w, f"{blocks}.{i}", h, mod, heads)
            i += 1
    out = F.linear(_their_ln_mod(h[:, m:], mod[3], mod[4]), w["final_layer.linear.weight"],
                   w["final_layer.linear.bias"])
    B, L, _ = out.shape
    g, C = int(L ** 0.5), out.shape[-1] // 4
    return torch.einsum("nhwpqc->nchpwq", out.reshape(B, g, g, 2, 2, C)).reshape(B, C, 2 * g, 2 * g)


def test_the_imported_model_is_their_v2_forward(tmp_path):
    _, cfg, path = write_tiny(tmp_path, tiny(time_embedder="mlp", time_embedder_layers=2))
    theirs = torch.load(path, weights_only=False)["ema"]
    model, _ = load_sampling_model(import_checkpoint(path, num_heads=2), use_ema=True, device=torch.device("cpu"))
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(3, 4, 16, 16, generator=g), torch.tensor([1, 4, 10])
    with torch.no_grad():
        for t in (0.05, 0.5, 0.9):
            tt = torch.full((3,), t)
            want = their_v2_forward(theirs, x, tt, y, heads=2, m=2)
            assert want.abs().max() > 1e-3 and (model(x, tt, y) - want).abs().max() < 1e-5, t


def test_a_run_compiled_with_torch_compile_imports_under_the_networks_names(tmp_path):
    """train.py --compile saves both state dicts through torch.compile's wrapper: every key under _orig_mod."""
    model, cfg, path = write_tiny(tmp_path)

    def compiled(obj):
        for part in ("ema", "model"):
            obj[part] = {f"_orig_mod.{k}": v for k, v in obj[part].items()}

    ckpt = import_checkpoint(edited(path, tmp_path, "compiled.pt", compiled), num_heads=2)
    assert ckpt["model_config"] == cfg.to_dict()
    plain = import_checkpoint(path, num_heads=2)
    assert all(torch.equal(ckpt["ema"][k], plain["ema"][k]) for k in plain["ema"])


def test_a_width_that_does_not_tell_its_heads_needs_them_given(tmp_path):
    cfg = tiny(hidden_size=48, num_heads=3)  # a width the DiT family does not tell the heads of
    _, _, path = write_tiny(tmp_path, cfg)
    with pytest.raises(ImportRefused, match="number of attention heads for hidden size 48"):
        import_checkpoint(path)
    assert import_checkpoint(path, num_heads=3)["model_config"]["num_heads"] == 3


# ---- refusals: the file named, the reason and keys stated, nothing written ------------------------------------
def refused(path, tmp_path, match: str, **kwargs) -> str:
    out = tmp_path / "out.pt"
    with pytest.raises(ImportRefused, match=match) as info:
        write_suite_checkpoint(path, out, num_heads=kwargs.pop("num_heads", 2), **kwargs)
    assert str(path) in str(info.value)
    assert not out.exists()
    return str(info.value)


def test_an_expected_size_other_than_the_file_is_refused(tmp_path):
    _, _, path = write_tiny(tmp_path)
    message = refused(path, tmp_path, r"where MPDiTv2-B has", expect="MPDiTv2-B")
    assert "'hidden_size': 32" in message and "'hidden_size': 768" in message and "'depths': [3, 1, 2]" in message
    message = refused(path, tmp_path, r"where MPDiT-B has", expect="MPDiT-B")
    assert "'patch_sizes': [8, 4, 2]" in message and "'patch_sizes': [4, 2]" in message
    refused(path, tmp_path, "expect='MPDiTv9-B' is not a preset", expect="MPDiTv9-B")


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    _, _, path = write_tiny(tmp_path)

    def drop(obj):
        for part in ("ema", "model"):
            del obj[part]["upsample_blocks_lvl2.0.mlp.fc1.bias"]

    def add(obj):
        for part in ("ema", "model"):
            obj[part]["upsampler_lvl3.proj.weight"] = torch.zeros(128, 32)

    message = refused(edited(path, tmp_path, "missing.pt", drop), tmp_path, "missing keys")
    assert "['upsample_blocks_lvl2.0.mlp.fc1.bias']" in message and "the EMA weights" in message
    message = refused(edited(path, tmp_path, "unexpected.pt", add), tmp_path, "unexpected keys")
    assert "['upsampler_lvl3.proj.weight']" in message


def test_a_v2_without_skips_or_with_other_patches_is_refused(tmp_path):
    """skip_connection=False and patch sizes other than (8, 4, 2) are networks the suite's MPDiT is not."""
    _, _, path = write_tiny(tmp_path)

    def no_skips(obj):
        for part in ("ema", "model"):
            for key in [k for k in obj[part] if k.startswith(("x_embedder_lvl", "linear_skip_lvl"))]:
                del obj[part][key]

    def coarse_four(obj):
        for part in ("ema", "model"):
            obj[part]["x_embedder.proj.weight"] = torch.zeros(32, 4, 4, 4)

    message = refused(edited(path, tmp_path, "noskip.pt", no_skips), tmp_path, "MPDiTv2 checkpoint without")
    assert "'x_embedder_lvl1.proj.weight'" in message and "skip_connection=True" in message
    refused(edited(path, tmp_path, "p4.pt", coarse_four), tmp_path, r"patches \[4, 4, 2\].*only with \[8, 4, 2\]")


def test_args_naming_another_network_are_refused(tmp_path):
    _, _, path = write_tiny(tmp_path)

    def named_b(obj):
        obj["args"].model = "MPDiTv2-B"

    def more_tokens(obj):
        obj["args"].num_condition_tokens = 16

    message = refused(edited(path, tmp_path, "named.pt", named_b), tmp_path, "args.model = 'MPDiTv2-B'")
    assert "'depths': [6, 4, 2]" in message and "'depths': [3, 1, 2]" in message
    refused(edited(path, tmp_path, "tokens.pt", more_tokens), tmp_path,
            "args.num_condition_tokens = 16 but the tensors hold class_tokens = 2")


def test_a_suite_model_their_networks_cannot_express_is_not_exported(tmp_path):
    cfg = model_config("MPDiTv2-B", **{**TINY, "patch_sizes": [4, 2, 1]})
    with pytest.raises(ConfigError, match=r"only with \[8, 4, 2\]"):
        write_source_checkpoint(cfg, "mpdit", tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


# ---- the imported checkpoint is a suite checkpoint: counted and sampled -----------------------------------------
def test_the_imported_checkpoint_is_counted_and_samples(tmp_path):
    _, cfg, path = write_tiny(tmp_path)
    out = tmp_path / "imported.pt"
    summary = write_suite_checkpoint(path, out, num_heads=2)
    assert summary["step"] == 0 and summary["preset"] is None and summary["source"] == "mpdit"
    state = checkpoint.load(out)
    model, loaded = load_sampling_model(state, use_ema=True, device=torch.device("cpu"))
    assert loaded == cfg

    counts = count_config(loaded, cross_check=False)
    stored = sum(v.numel() for v in state["ema"].values())  # position tables and both spectral halves included
    assert counts["params_stored"] == stored
    assert counts["params"] == stored - 3 * 32 * 32 * 16  # a complex spectral weight counted as one number
    assert counts["gflops"] == pytest.approx(model.flops() / 1e9, rel=0.005)  # fvcore vs the analytic count

    options = check_options({**state.get("run_config", {}).get("sample", {}), "steps": 3, "batch_size": 2})
    x = sample_indices(model, loaded, [0, 1], torch.tensor([1, 3]), options, torch.device("cpu"))
    assert x.shape == (2, 4, 16, 16) and torch.isfinite(x).all()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mpdit_bench", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=300)


def test_the_import_command_and_flops_take_the_three_level_file(tmp_path):
    _, cfg, path = write_tiny(tmp_path)
    proc = cli("import", str(path), "--out", str(tmp_path / "x.pt"), "--expect", "MPDiTv2-B", "--num-heads", "2")
    assert proc.returncode == 1 and "MPDiTv2-B" in proc.stderr and str(path) in proc.stderr.replace("\n", "")
    assert not (tmp_path / "x.pt").exists()
    proc = cli("import", str(path), "--out", str(tmp_path / "x.pt"), "--num-heads", "2")
    assert proc.returncode == 0, proc.stderr
    imported = ModelConfig.from_dict(checkpoint.load(tmp_path / "x.pt")["model_config"])
    overrides = [f"{key}={json.dumps(value)}" for key, value in imported.to_dict().items()
                 if value != model_config("MPDiTv2-B").to_dict()[key] and key != "input_size"]
    proc = cli("flops", "--model", "MPDiTv2-B", "--resolution", str(8 * imported.input_size), "--json",
               "--no-cross-check", *[arg for o in overrides for arg in ("--set", o)])
    assert proc.returncode == 0, proc.stderr
    counted = json.loads(proc.stdout)
    assert counted["config_hash"] == imported.config_hash()
    assert counted["gflops_analytic"] == pytest.approx(build_model(imported).flops() / 1e9, rel=1e-9)
