"""The commands' tables and summary lines (rich), from the plain dicts the library returns."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mpdit_bench.cli.common import console, fmt, published

_MARKS = {"paper": "¹", "true": "²", "unknown": "³"}
_MARK_WORDS = {"paper": "¹ counted in the MPDiT paper's convention", "true": "² DiT's true count",
               "unknown": "³ a convention no known counter reproduces"}
MODELS_NOTES = ("p x N: patch size x blocks per level, coarse first. GFLOPs: true count (fvcore convention, "
                "batch 1); ᵃ PPFlow rows: per network evaluation averaged "
                "over a sampling trajectory (`mpdit-bench flops --model NAME` shows every stage). Paper figures as "
                "printed: ¹ the MPDiT paper's convention (attention charged at the fine grid in every block), "
                "² DiT's true count, ʳ PPFlow's test FLOPs relative to the isotropic model (ours in brackets). "
                "`mpdit-bench tables` shows every published row beside ours.")


def _paper_gflops(value: float | None, convention: str | None) -> str:
    return published(value) + (_MARKS.get(convention, "") if value is not None else "")


# ---- counting -----------------------------------------------------------------------------------------------
def models_table(rows: list[dict[str, Any]], resolution: int) -> Table:
    """Fits 80 columns: the name is never cut (no wrap, as wide as the longest); the other columns wrap."""
    table = Table(title=f"presets at {resolution} px", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("model", no_wrap=True, min_width=max(len(r["model"]) for r in rows))
    table.add_column("p x N", overflow="fold")  # per level, coarse first: patch size x blocks
    for col in ("D", "m", "params M", "GFLOPs", "paper params M", "paper GFLOPs"):
        table.add_column(col, justify="right", overflow="fold")
    for r in rows:
        levels = " ".join(f"{p}x{d}" for p, d in zip(r["patch_sizes"], r["depths"]))
        if r["time_patch_sizes"]:
            gflops = fmt(r["gflops_expected_analytic"]) + "ᵃ"
            relative = 100 * r["gflops_expected_analytic"] / r["gflops_analytic"]
            paper = (f"{r['paper_relative_flops_pct']:.1f}%ʳ ({relative:.1f}%)"
                     if r["paper_relative_flops_pct"] is not None else "-")
        else:
            gflops = fmt(r["gflops_analytic"])
            paper = _paper_gflops(r["paper_gflops"], r["paper_gflops_convention"])
        table.add_row(r["model"], levels, str(r["hidden_size"]), str(r["class_tokens"]), fmt(r["params"] / 1e6, 1),
                      gflops, published(r["paper_params"]), paper)
    return table


def print_flops(result: dict[str, Any], resolution: int) -> None:
    """One configuration's counts beside the paper's, PPFlow's stages, and the configuration itself."""
    table = Table(title=f"{result['model']} at {resolution} px", show_header=True)
    table.add_column("quantity")
    table.add_column("ours", justify="right")
    table.add_column("paper", justify="right")
    table.add_row("params (M)", fmt(result["params"] / 1e6, 2), published(result["paper_params"]))
    table.add_row("trainable params (M)", fmt(result["params_trainable"] / 1e6, 2), "")
    table.add_row("GFLOPs, true (fvcore, attention counted)", fmt(result["gflops"], 3), "")
    table.add_row("GFLOPs, analytic", fmt(result["gflops_analytic"], 3), "")
    table.add_row("GFLOPs, paper convention", fmt(result["gflops_paper_convention"], 3),
                  _paper_gflops(result["paper_gflops"], result["paper_gflops_convention"]))
    if result["gflops_conv_transpose_output_extra"]:
        table.add_row("  of which ConvTranspose2d per output position",
                      "+" + fmt(result["gflops_conv_transpose_output_extra"], 3), "")
    table.add_row("GMACs, ptflops cross-check", fmt(result["gmacs_ptflops"], 3), "")
    console.print(table)
    if "stages" in result:
        _print_schedule_counts(result)
    if result["paper_source"]:
        console.print(f"paper figures: {result['paper_source']}; "
                      + _MARK_WORDS.get(result["paper_gflops_convention"], ""))
    if result["gflops_conv_transpose_output_extra"]:
        console.print("the true count charges ConvTranspose2d per input position (as a Linear expansion); the paper "
                      "convention charges it per output position (Cin x Cout x f^2 per fine token)")
    cfg = result["config"]
    console.print(f"patches {cfg['patch_sizes']} depths {cfg['depths']} D={cfg['hidden_size']} "
                  f"heads={cfg['num_heads']} m={cfg['class_tokens']} time={cfg['time_embedder']}x"
                  f"{cfg['time_embedder_layers']} modulation={cfg['modulation']} "
                  f"upsample={cfg['upsample']}+{cfg['upsample_refine']} "
                  f"config hash {result['config_hash']}")


def _print_schedule_counts(result: dict[str, Any]) -> None:
    """PPFlow: the rows above are the finest stage; here every stage and the trajectory average."""
    table = Table(title="patch schedule over time (suite t: 0 data, 1 noise); rows above = finest stage")
    for col in ("stage", "patch (rows x cols)", "t range", "time fraction", "tokens", "GFLOPs", "GFLOPs analytic"):
        table.add_column(col, justify="right")
    for st in result["stages"]:
        lo, hi = st["t_range"]
        table.add_row(str(st["stage"]), st["patch"], f"[{lo:.3g}, {hi:.3g}{']' if hi == 1 else ')'}",
                      f"{st['time_fraction']:.3f}", str(st["tokens"]), fmt(st["gflops"], 3),
                      fmt(st["gflops_analytic"], 3))
    console.print(table)
    console.print(f"expected GFLOPs per evaluation over a trajectory: {result['gflops_expected']:.3f} "
                  f"(analytic {result['gflops_expected_analytic']:.3f}); relative to the model without the "
                  f"schedule ({result['reference_gflops']:.3f}): [bold]{result['relative_flops_pct']:.2f} %[/] "
                  f"(DiT convention: fvcore, attention counted)")
    if result.get("paper_relative_flops_pct") is not None:
        gap = result["relative_flops_pct"] - result["paper_relative_flops_pct"]
        console.print(f"paper: {published(result['paper_relative_flops_pct'])} % as printed (ours {gap:+.2f} "
                      f"points); FID-50k {published(result['paper_fid50k'])}")


def paper_table(table: dict[str, Any]) -> Table:
    """A rebuilt paper table for the terminal: one column per figure, the paper's value over ours (dim), so
    that it is half as wide as the markdown; every column wraps, the row label and figures are never cut."""
    from mpdit_bench.reports.paper_render import table_cells

    headers, rows, _ = table_cells(table)
    title = Text(f"{table['name']}: {table['title']}", style="bold")
    grid = Table(title=title, caption=Text(table["note"]) if table.get("note") else None, box=box.SIMPLE_HEAD,
                 show_edge=False, pad_edge=False, collapse_padding=True, show_lines=True, title_justify="left",
                 caption_justify="left")
    grid.add_column("row", overflow="fold")
    for name, ours in headers:
        header = Text(name)
        if ours:
            header.append(f"\npaper\n{ours}", style="dim")
        grid.add_column(header, justify="right" if ours else "left", overflow="fold")  # figures right, text left
    for label, cells in rows:
        texts = []
        for printed, ours in cells:
            text = Text(printed)
            if ours:
                text.append("\n" + ours, style="dim")
            texts.append(text)
        grid.add_row(Text(label), *texts)
    return grid


def paper_table_notes(tables: list[dict[str, Any]]) -> list[str]:
    """The footnotes of several tables, each once, in the order they first appear."""
    from mpdit_bench.reports.paper_render import table_cells

    return list(dict.fromkeys(note for t in tables for note in table_cells(t)[2]))


# ---- sweeps and search --------------------------------------------------------------------------------------
DRY_RUN_WIDE = 120  # narrower consoles drop the columns `--json` still gives


_DRY_RUN_HEADERS = {"params M": "params\nM", "GFLOPs conv.": "GFLOPs\nconv.", "steps x batch": "steps x\nbatch",
                    "train FLOP": "train\nFLOP", "device-h": "device\nhours", "wall-h": "wall\nhours"}


def print_dry_run(title: str, rows: list[dict[str, Any]], totals: str) -> None:
    """One row per run. Only the label wraps: the run id and the numbers are never cut. A console narrower
    than DRY_RUN_WIDE drops the paper-convention GFLOPs, the training FLOP and a processes column that would
    repeat one number (the note says it). Wall-hours appear where a run has more than one process."""
    wide = console.width >= DRY_RUN_WIDE
    nprocs = sorted({r["nproc"] for r in rows}) or [1]
    multi = nprocs[-1] > 1
    procs_column = multi and (wide or len(nprocs) > 1)
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("run", no_wrap=True)
    table.add_column("label", overflow="fold")
    columns = ["seed"] + (["procs"] if procs_column else []) + ["params M", "GFLOPs"] \
        + (["GFLOPs conv."] if wide else []) + ["steps x batch"] + (["train FLOP"] if wide else []) \
        + ["device-h"] + (["wall-h"] if multi else [])
    for col in columns:
        table.add_column(_DRY_RUN_HEADERS.get(col, col), justify="right", no_wrap=True)
    for r in rows:
        cells = {"seed": str(r["seed"]), "procs": str(r["nproc"]), "params M": fmt(r["params"] / 1e6, 2),
                 "GFLOPs": fmt(r["gflops"], 3), "GFLOPs conv.": fmt(r["gflops_paper_convention"], 3),
                 "steps x batch": f"{r['steps']} x {r['global_batch']}", "train FLOP": f"{r['train_pflop'] * 1e15:.2e}",
                 "device-h": fmt(r["device_hours"], 3), "wall-h": fmt(r["wall_hours"], 3)}
        label = Text(r["label"] + (" (smoke)" if r["smoke"] else ""))  # Text: a label is not markup
        table.add_row(r["run_id"], label, *(cells[col] for col in columns))
    console.print(table)
    notes = [totals]
    if not multi:
        notes.append("One process per run: wall-hours = device-hours.")
    elif not procs_column:
        notes.append(f"Every run: {nprocs[0]} processes.")
    if not wide:
        notes.append(f"Left out below {DRY_RUN_WIDE} columns: GFLOPs in the paper's convention, training FLOP "
                     "(`--json` has every field).")
    console.print(Text(" ".join(notes)))


def pareto_table(study: Any, objective_names: list[str]) -> Table:
    import json

    table = Table(title=f"study {study.study_name}: Pareto front")
    table.add_column("trial", justify="right")
    for name in objective_names:
        table.add_column(name, justify="right")
    table.add_column("params", overflow="fold")  # wraps, never cut
    for t in study.best_trials:
        table.add_row(str(t.number), *[fmt(v, 4) for v in t.values], json.dumps(t.params))
    return table


# ---- benchmarks and evaluation ------------------------------------------------------------------------------
def print_comparison(result: dict[str, Any]) -> None:
    """`bench train` / `bench sample`: both models' rows and the A / B ratios."""
    a, b = result["a"], result["b"]
    sampling = result["mode"] == "sample"
    title = f"bench {result['mode']}, batch {a['batch']}, {a['device']}"
    if sampling:
        title += f", {a['sample_steps']}-step {a['sampler']} trajectories, cfg {a['cfg_scale']:g}"
    table = Table(title=title)
    # headers wrap at their spaces and every column is at least as wide as its widest figure: the table fits
    # 80 columns with every figure whole
    columns = ("model", "params (M)", *(("GFLOPs / eval",) if sampling else ()), "GFLOPs / img", "images / s",
               "s per traj." if sampling else "s / iter (median)", "peak mem (MiB)")
    rows = []
    for r in (a, b):
        per_eval = (fmt(r["gflops_per_evaluation"], 3),) if sampling else ()
        rows.append((r["model"], fmt(r["params"] / 1e6, 2), *per_eval, fmt(r["gflops_per_image"], 3),
                     fmt(r["images_per_s"], 2), fmt(r["seconds_per_iter_median"], 4),
                     fmt(r["peak_memory_bytes"] / 2**20, 1)))
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if col == "model" else "right",
                         min_width=max(len(row[i]) for row in rows))
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if sampling:
        console.print(f"GFLOPs/eval: averaged over the trajectory's evaluations (a patch schedule's coarse stages "
                      f"cost less); GFLOPs/img = GFLOPs/eval x steps x guidance passes; "
                      f"GFLOPs {a['model']} / {b['model']} = {result['gflops_ratio_a_over_b']:.3f}", style="dim")
    console.print(f"throughput {a['model']} / {b['model']} = [bold]{result['throughput_ratio_a_over_b']:.3f}x[/], "
                  f"peak memory ratio {fmt(result['memory_ratio_a_over_b'], 3)} ({a['memory_method']}) "
                  f"-> {result['path']}")


def print_evaluation(result: dict[str, Any], samples: str, ref: str | None, keys: tuple[str, ...]) -> None:
    """Every metric computed (the proxy ones when asked for), with its 95 % interval where there is one."""
    table = Table(title=Text(f"{samples} vs {ref}"))  # Text: no emoji codes (':train:') in names
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in keys:
        if key.endswith("_proxy") == ("proxy" in result["metrics"]) or result[key] is not None:
            ci = result.get(f"{key}_ci95")
            table.add_row(key, fmt(result[key], 4) + (f"  [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""))
    console.print(table)
    for note in result["notes"]:
        console.print(Text(f"note: {note}", style="yellow"))
