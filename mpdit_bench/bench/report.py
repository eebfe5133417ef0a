"""The GPU check's report: its targets, each with the measured value, and the markdown of every table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mpdit_bench.files import write_text_atomic

JSON_NAME, MARKDOWN_NAME = "gpu_check.json", "gpu_check.md"
TARGETS = {"mfu_mpdit": 0.40, "step_time_ratio": 0.52, "sampling_speedup": 2.0, "memory_ratio": 0.6}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the check with the measured value (None where the run did not measure it)."""
    a, b = result["models"]
    rows = []
    train = [r for r in result["train"] if r["model"] == a and not r.get("oom")]
    best = max(train, key=lambda r: r["mfu"], default=None)
    precision = result["peak"]["dtype"] if result["peak"] else "bfloat16"
    rows.append({"target": f"MFU of {a} training ({precision}), best row", "goal": f">= {TARGETS['mfu_mpdit']:.0%}",
                 "value": best["mfu"] if best else None,
                 "where": f"{best['compile']}, batch {best['batch']}" if best else None,
                 "met": best["mfu"] >= TARGETS["mfu_mpdit"] if best else None})
    common = result["settings"]["common_batch"]
    for mode in ("eager", "compile"):
        pair = [next((r for r in result["train"] if r["model"] == m and r["compile"] == mode
                      and r["batch"] == common and r["kind"] == "common" and not r.get("oom")), None) for m in (a, b)]
        step = _ratio(*(r["seconds_per_step_median"] if r else None for r in pair))
        rows.append({"target": f"step time {a} / {b}, batch {common}, {mode}",
                     "goal": f"<= {TARGETS['step_time_ratio']}", "value": step, "where": mode,
                     "met": step <= TARGETS["step_time_ratio"] if step else None})
        if mode == "eager":
            mem = _ratio(*(r["peak_memory_bytes"] if r else None for r in pair))
            rows.append({"target": f"peak training memory {a} / {b}, batch {common}, eager",
                         "goal": f"<= {TARGETS['memory_ratio']}", "value": mem, "where": mode,
                         "met": mem <= TARGETS["memory_ratio"] if mem else None})
    for precision in sorted({r["precision"] for r in result["sample"]}):
        pair = [next((r for r in result["sample"] if r["model"] == m and r["precision"] == precision), None)
                for m in (a, b)]
        speed = _ratio(*(r["images_per_s"] if r else None for r in pair))
        rows.append({"target": f"sampling images/s {a} / {b}, CFG, {precision}",
                     "goal": f">= {TARGETS['sampling_speedup']}", "value": speed, "where": precision,
                     "met": speed >= TARGETS["sampling_speedup"] if speed else None})
    return rows


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**30:.2f}"


def markdown(result: dict[str, Any]) -> str:
    """The check as markdown: environment, training, sampling, evaluation, profiles, targets, what was not run."""
    env, peak = result["environment"], result.get("peak")
    size = "small" if result["small"] else "full size"
    lines = [f"# GPU check: {result['models'][0]} vs {result['models'][1]} ({size})", "",
             f"{env.get('device_name')} ({env['device_type']}), torch {env['torch']}, python {env['python']}; "
             f"created {result['created_utc']}, {result['elapsed_s']:.0f} s of a {result['budget_s']:.0f} s budget.",
             ""]
    if peak:
        lines += [f"Matmul rate ({peak['n']}^3, {peak['dtype']}, random data): "
                  f"{peak['flops_per_s'] / 1e12:.4g} TFLOP/s (the MFU denominator). torch.compile rows: "
                  f"backend {result['settings']['compile_backend']}.", ""]
    lines += ["## Training (the engine's step: flow loss, AdamW, EMA)", "",
              "| model | compile | batch | kind | steps/s | images/s | peak mem GiB | MFU | warm-up s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in result["train"]:
        if r.get("oom"):
            lines.append(f"| {r['model']} | {r['compile']} | {r['batch']} | {r['kind']} | out of memory | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['compile']} | {r['batch']} | {r['kind']} | {r['steps_per_s']:.3g} | "
                     f"{r['images_per_s']:.4g} | {_gib(r['peak_memory_bytes'])} | {r['mfu']:.1%} | "
                     f"{r['warmup_s']:.1f} |")
    for s in result["batch_search"]:
        probes = ", ".join(f"{b}{'' if ok else ' (OOM)'}" for b, ok in s["probes"]) or "none"
        lines.append(f"\nLargest batch {s['model']} ({s['compile']}): {s['batch']}, stopped by {s['stopped_by']}; "
                     f"probes {probes}.")
    lines += ["", "## Sampling (the engine's Euler sampler with CFG, whole trajectory)", "",
              "| model | precision | batch | steps | images/s | s |", "|---|---|---|---|---|---|"]
    for r in result["sample"]:
        lines.append(f"| {r['model']} | {r['precision']} | {r['batch']} | {r['steps']} | {r['images_per_s']:.4g} | "
                     f"{r['seconds']:.3g} |")
    ev = result.get("eval")
    if ev:
        lines += ["", f"## Evaluation: Inception features of {ev['images']} images ({ev['image_size']} px), "
                      f"device vs CPU", "", f"Weights: {ev['weights']} (SHA-256 {ev['weights_sha256'][:16]}). "
                      f"CPU: {ev['cpu_images_per_s']:.3g} images/s.", "",
                  "| cuDNN TF32 | max rel. diff pool3 | max rel. diff sFID feats | "
                  f"within {ev['tolerance']:g} | images/s |",
                  "|---|---|---|---|---|"]
        for v in ev["variants"]:
            lines.append(f"| {v['cudnn_tf32']} | {v['rel_err_pool3']:.2e} | {v['rel_err_spatial']:.2e} | "
                         f"{'yes' if v['equal_within_tolerance'] else 'NO'} | {v['images_per_s']:.4g} |")
    for model, rows in result["profile"].items():
        lines += ["", f"## Profile: {model}, eager, batch {result['settings']['common_batch']} (top by self time)", "",
                  "| kernel / op | calls | ms per step | share |", "|---|---|---|---|"]
        for r in rows:
            name = r["name"].replace("|", "/")
            lines.append(f"| {name[:90]} | {r['calls']} | {r['self_ms_per_step']:.3g} | {r['share']:.1%} |")
    lines += ["", "## Targets", "", "| target | goal | measured | met |", "|---|---|---|---|"]
    for t in result["targets"]:
        met = "not measured" if t["met"] is None else ("yes" if t["met"] else "no")
        value = "-" if t["value"] is None else (f"{t['value']:.1%}" if "MFU" in t["target"] else f"{t['value']:.3f}")
        lines.append(f"| {t['target']} | {t['goal']} | {value} | {met} |")
    if result["phase_s"]:
        lines += ["", "Seconds per phase: " + ", ".join(f"{k} {v:.1f}" for k, v in result["phase_s"].items()) + "."]
    if result["skipped"]:
        lines += ["", "Not run: " + "; ".join(result["skipped"]) + "."]
    if result["errors"]:
        lines += ["", "Errors: " + "; ".join(result["errors"])]
    return "\n".join(lines) + "\n"


def write_report(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """The targets filled in, then the JSON and the markdown written (atomically) into ``out_dir``."""
    result["targets"] = targets(result)
    paths = [Path(out_dir) / JSON_NAME, Path(out_dir) / MARKDOWN_NAME]
    write_text_atomic(paths[0], json.dumps(result, indent=2))
    write_text_atomic(paths[1], markdown(result))
    return paths


__all__ = ["JSON_NAME", "MARKDOWN_NAME", "TARGETS", "markdown", "targets", "write_report"]
