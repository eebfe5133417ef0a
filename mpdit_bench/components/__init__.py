"""The network's parts, each owning its ``flops()``; the swappable ones register themselves in the registry.

- ``flops``: the FLOP conventions every ``flops()`` follows (imports nothing of the suite);
- ``embeddings``: patch embeddings, the fine-level skip, fixed sin-cos position tables;
- ``class_embed``, ``modulation``, ``time_embed``, ``upsample``: the registered kinds.

Importing this package imports every registered component, so ``mpdit_bench.registry`` lists them all.
A new component is a module here plus its line below.
"""

from mpdit_bench.components import class_embed, modulation, time_embed, upsample

__all__ = ["class_embed", "modulation", "time_embed", "upsample"]
