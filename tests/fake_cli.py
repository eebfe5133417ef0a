"""A stand-in for `python -m mpdit_bench train|sample|evaluate`, following docs/CONTRACTS.md.

It writes the files and prints the JSON the real commands document, with no model behind them, so the
sweep's stage layer (command lines, waiting, polling metrics.csv, parsing) can be tested on its own.
Metric values are null: this stand-in computes none.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import yaml


def train(args):
    cfg = yaml.safe_load(Path(args.config).read_text())
    out = Path(args.out)
    steps, batch = cfg["train"]["steps"], cfg["train"]["global_batch"]
    lines = ["step,epoch,loss,lr,images_per_s,wall_s,val_loss"]
    for step in range(1, steps + 1):
        lines.append(f"{step},0,{1.0 / step},{cfg['train'].get('lr', 1e-4)},100.0,{step * 0.1},"
                     + (f"{2.0 / step}" if step % 2 == 0 else ""))
        (out / "metrics.csv").write_text("\n".join(lines) + "\n")
        time.sleep(float(os.environ.get("FAKE_CLI_STEP_SLEEP", "0.05")))  # tests slow it to stop it
    (out / "checkpoints").mkdir(exist_ok=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"stand-in checkpoint")
    (out / "summary.json").write_text(json.dumps({"step": steps, "images_seen": steps * batch, "world_size": 1}))


def sample(args):
    n = args.num
    np.savez(args.out, arr_0=np.zeros((n, 32, 32, 3), np.uint8), arr_1=np.arange(n) % 10)
    Path(args.out).with_name("samples.png").write_bytes(b"\x89PNG\r\n\x1a\n")


def evaluate(args):
    n = len(np.load(args.samples)["arr_0"])
    print("extracting features ... (stand-in)")
    keys = ("fid", "sfid", "is", "precision", "recall", "kid", "fd_fmnist_proxy", "kid_fmnist_proxy",
            "precision_fmnist_proxy", "recall_fmnist_proxy", "class_accuracy_fmnist_proxy")
    print(json.dumps({**{k: None for k in keys}, "num_samples": n, "metrics": args.metrics.split(","),
                      "notes": ["stand-in: nothing computed"], "inception_weights_sha256": None,
                      "reference_sha256": None}))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("config")
    t.add_argument("--out")
    s = sub.add_parser("sample")
    s.add_argument("ckpt")
    s.add_argument("--num", type=int)
    s.add_argument("--out")
    for flag in ("--sampler", "--steps", "--cfg-scale", "--seed", "--batch-size"):
        s.add_argument(flag)
    e = sub.add_parser("evaluate")
    e.add_argument("samples")
    e.add_argument("--ref")
    e.add_argument("--metrics")
    e.add_argument("--json", action="store_true")
    args = parser.parse_args()
    {"train": train, "sample": sample, "evaluate": evaluate}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
