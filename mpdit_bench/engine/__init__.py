"""The engine: flow matching, the training loop, checkpoints, torchrun, sampling and benchmarks."""
