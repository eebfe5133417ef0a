"""The engine: flow matching, the training loop, checkpoints, torchrun and sampling."""
