"""PPFlow: the patch size follows sampling time. Its one home: the schedule, the coarse stages' modules,
Patch n' Pack and the conversion of isotropic checkpoints."""
