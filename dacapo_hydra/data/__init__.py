"""Data: zarr arrays in world units, datasplits, samplers, augmentations."""
