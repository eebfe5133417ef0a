"""Suite weights written in each source's format and imported back: the same function, the same config."""

import pytest
import torch

from mpdit_bench.config import ConfigError
from mpdit_bench.engine.sampling import load_sampling_model
from mpdit_bench.imports import import_checkpoint
from mpdit_bench.imports.export import random_suite_model, write_source_checkpoint
from mpdit_bench.models import model_config

TINY = dict(hidden_size=32, num_heads=2, input_size=8, num_classes=10, time_embed_scale=1)
CONFIGS = {
    "mpdit": model_config("MPDiT-B", depths=[1, 1], class_tokens=2, fno_init="authors", **TINY),
    "sit": model_config("SiT-S/2", depths=[2], **TINY),
    "ppflow": model_config("PPF-B-3", depths=[1], **TINY),
}


@pytest.mark.parametrize("source", sorted(CONFIGS))
@pytest.mark.parametrize("kind", ["released", "train"])
def test_export_then_import_gives_back_the_model(source, kind, tmp_path):
    cfg = CONFIGS[source]
    model = random_suite_model(cfg, seed=3).eval()
    path = write_source_checkpoint(cfg, source, tmp_path / f"{source}.pt", kind, state=model.state_dict())
    ckpt = import_checkpoint(path, source=source, num_heads=cfg.num_heads)
    assert ckpt["model_config"] == cfg.to_dict() and ckpt["imported_from"]["format"] == kind
    back, _ = load_sampling_model(ckpt, use_ema=True, device=torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 4, 8, 8, generator=g), torch.tensor([0, 3, 7, 10])
    with torch.no_grad():
        for t in (0.1, 0.4, 0.6, 0.9):  # every stage of PPF-B-3
            tt = torch.full((4,), t)
            assert torch.allclose(back(x, tt, y), model(x, tt, y), atol=1e-5), (source, t)


def test_a_random_file_in_a_source_format_has_a_non_trivial_function(tmp_path):
    cfg = CONFIGS["sit"]
    path = write_source_checkpoint(cfg, "sit", tmp_path / "sit.pt")
    model, _ = load_sampling_model(import_checkpoint(path, num_heads=2), use_ema=True, device=torch.device("cpu"))
    with torch.no_grad():
        out = model(torch.randn(2, 4, 8, 8), torch.tensor([0.3, 0.7]), torch.tensor([1, 2]))
    assert out.abs().max() > 1e-3


@pytest.mark.parametrize("source,cfg", [("sit", CONFIGS["mpdit"]), ("mpdit", CONFIGS["sit"]),
                                        ("sit", model_config("SiT-S/2", depths=[2], hidden_size=32, num_heads=2,
                                                             input_size=8))])
def test_a_model_the_source_cannot_express_is_refused(source, cfg, tmp_path):
    with pytest.raises(ConfigError, match="model_config"):
        write_source_checkpoint(cfg, source, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
