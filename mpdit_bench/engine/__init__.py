"""The engine: flow matching, the training loop, torchrun, sampling, latent extraction and torch's global settings."""
