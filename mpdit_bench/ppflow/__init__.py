"""PPFlow: the patch size follows sampling time, coarse (noisy) stages first. Its one home:

- ``schedule``: the stages and their t ranges, the per-stage t draw for training, guidance per stage;
- ``modules``: what a coarse stage adds to the model (space-to-depth patch embedding and its inverse);
  the per-stage choice itself is inside ``models.multipatch.MultiPatchDiT``'s forward;
- ``packing``: Patch n' Pack, a mixed-stage batch in one pass;
- ``convert``: an isotropic (or MPDiT) checkpoint -> a schedule model (average / copy initialisation).
The default schedules are the presets' (``models/presets.py``); the trajectory-averaged FLOPs are counting's.
"""

from mpdit_bench.ppflow.packing import assign_sequences, block_diagonal_mask, forward_packed, segment_mask
from mpdit_bench.ppflow.schedule import (PatchSchedule, as_schedule, guidance_scale_at, sample_stage_times,
                                         stage_counts)

__all__ = ["PatchSchedule", "as_schedule", "assign_sequences", "block_diagonal_mask", "forward_packed",
           "guidance_scale_at", "sample_stage_times", "segment_mask", "stage_counts"]
