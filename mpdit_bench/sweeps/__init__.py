"""Experiments, sweeps, records and architecture search (see docs/SWEEPS.md)."""
