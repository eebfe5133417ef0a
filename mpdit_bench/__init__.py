"""mpdit-bench: architecture search and ablation benchmarking of multi-patch diffusion transformers."""

__version__ = "0.1.0"
