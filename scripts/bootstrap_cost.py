"""Seconds per bootstrap replicate at ADM scale: 50k generated pool3 rows against a reference's stored
statistics (FID) and its 50k rows (KID), on synthetic features of the real shapes.

    PYTHONPATH=$PWD python3 scripts/bootstrap_cost.py [--num 50000] [--replicates 3]

Feature extraction is not run here: its rate is measured by `mpdit-bench evaluate` (docs/EVALUATION.md).
"""

import argparse
import json
import time

import numpy as np

from mpdit_bench.evaluation import bootstrap as B
from mpdit_bench.evaluation import metrics as M

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=50000)
    ap.add_argument("--replicates", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    fake = np.abs(rng.normal(size=(args.num, 2048))).astype(np.float32)  # pool3 is post-ReLU average
    ref = np.abs(rng.normal(size=(args.num, 2048))).astype(np.float32) + 0.01
    ref_stats = M.gaussian_stats(ref[:4096])  # stands in for an ADM batch's stored mu, sigma
    draws = B.Draws.make(args.replicates, args.num, args.num)
    out = {"num": args.num, "replicates": args.replicates}
    for reps in (1, args.replicates):  # set-up (one pass over the rows) + reps x the per-replicate cost
        start = time.time()
        B.frechet_replicates(fake, B.Draws(draws.samples[:reps], None), ref_stats=ref_stats)
        out[f"fid_s_{reps}_replicates"] = time.time() - start
    start = time.time()
    B.kid_replicates(fake, ref, draws, subsets=100, subset_size=1000)
    out["kid_s_per_replicate"] = (time.time() - start) / args.replicates
    print(json.dumps(out))
