"""Class conditioning: DiT's label vector added into the modulation, or MPDiT's m prefix tokens.

Both tables have C + 1 rows; the last row is the learned null class used for guidance.
``forward(y)`` returns ``(vector or None, tokens or None)``.
"""

from __future__ import annotations

import torch
from torch import nn

from mpdit_bench.registry import register


@register("class_embedder", "label")
class LabelEmbedder(nn.Module):
    """DiT: one D-wide vector per class, added to the time embedding before the modulation (m = 0)."""

    def __init__(self, num_classes: int, hidden_size: int, num_tokens: int = 0):
        super().__init__()
        self.table = nn.Embedding(num_classes + 1, hidden_size)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.table(y), None

    def init_weights(self) -> None:
        nn.init.normal_(self.table.weight, std=0.02)

    def flops(self) -> int:
        return 0


@register("class_embedder", "tokens")
class ClassTokens(nn.Module):
    """MPDiT: each class row is m*D wide, reshaped into m tokens prepended to the image tokens.

    They carry no position embedding and never enter the modulation."""

    def __init__(self, num_classes: int, hidden_size: int, num_tokens: int):
        super().__init__()
        self.num_tokens, self.hidden_size = num_tokens, hidden_size
        self.table = nn.Embedding(num_classes + 1, num_tokens * hidden_size)

    def forward(self, y: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, self.table(y).view(-1, self.num_tokens, self.hidden_size)

    def init_weights(self) -> None:
        nn.init.normal_(self.table.weight, std=0.02)

    def flops(self) -> int:
        return 0
