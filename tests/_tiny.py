"""A tiny run config shared by the training, sampling and distributed tests (seconds on 2 CPU cores)."""

from __future__ import annotations

import copy

TINY_RUN = {
    "model": "MPDiT-B",
    "model_overrides": {"hidden_size": 32, "num_heads": 2, "depths": [1, 1], "patch_sizes": [8, 4],
                        "class_tokens": 2},
    "data": {"name": "fashion-mnist", "limit": 16},
    "train": {"global_batch": 8, "lr": 1.0e-3, "steps": 6, "seed": 3, "ema_decay": 0.9, "ema_warmup": True, "device": "cpu",
              "threads": 1, "log_every": 1, "ckpt_every": 2, "progress": False},
}


def tiny_run(**train_overrides):
    cfg = copy.deepcopy(TINY_RUN)
    cfg["train"].update(train_overrides)
    return cfg
