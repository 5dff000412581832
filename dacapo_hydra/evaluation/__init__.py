"""Evaluation metrics on numpy arrays: binary masks and instance segmentations."""
