"""Plans a run from its data's fingerprint and the device: the settings a user left out.

`topology` (downsampling and kernels per level from the voxel size and object
size), `budget` (crop shape and batch from a memory budget), `augmentations`
(what the anisotropy allows, lengths in the data's units), `stopping` (ceiling,
validation interval and patience sized to the data), `plan` (the typed plan, a
reason per value) and `experiment` (the plan as Hydra overrides and an
experiment YAML; applied under the command line's own overrides).
"""
