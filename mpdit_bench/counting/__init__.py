"""Counting: parameters and FLOPs of any configuration, the one place where they are computed.

- ``analytic``: the FLOP conventions (helpers every component's ``flops()`` uses, tallied by kind);
- ``measure``: params, true FLOPs (fvcore), the analytic count, the MPDiT paper's convention, ptflops;
- ``summary``: a named preset with overrides counted into a dict (the ``flops`` and ``models`` commands).

``analytic`` is imported by the model's own modules, so this package imports nothing heavy at load time.
"""
