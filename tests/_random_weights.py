"""Models with small random weights everywhere, shared by the PPFlow tests."""

import torch


def randomised(model, seed=0):
    """Non-zero weights everywhere (zero-initialised layers would hide stage differences)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()
