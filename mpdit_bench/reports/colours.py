"""One colour per configuration, the same in every plot of a report: assigned in the experiment's order."""

from __future__ import annotations

from typing import Iterable

# tab10 then the light half of tab20: distinct on white, and stable without importing matplotlib
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
           "#dbdb8d", "#9edae5")
MARKERS = "osD^v<>ph*"


def colour_map(labels: Iterable[str]) -> dict[str, str]:
    """label -> colour, by first appearance in ``labels`` (the experiment's order, not the records')."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(dict.fromkeys(labels))}


def marker_map(labels: Iterable[str]) -> dict[str, str]:
    """label -> marker, so that labels sharing a colour past the palette's end still differ."""
    return {label: MARKERS[(i // len(PALETTE)) % len(MARKERS)] for i, label in enumerate(dict.fromkeys(labels))}
