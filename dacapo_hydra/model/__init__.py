"""The trained model that training, validation, prediction and export share.

- :mod:`~dacapo_hydra.model.spec`: :class:`ModelSpec`, the facts a checkpoint stores
  about its network (dims, channels, voxel sizes, normalisation, pad mode), read in
  one place;
- :mod:`~dacapo_hydra.model.trained`: :class:`TrainedModel`, network + head + the
  task's activation, an `nn.Module` whose forward is the prediction;
- :mod:`~dacapo_hydra.model.load`: :func:`load`, a checkpoint to a
  :class:`TrainedModel` under the trust rules of :mod:`dacapo_hydra.trust`, cached
  per process;
- :mod:`~dacapo_hydra.model.plan`, :mod:`~dacapo_hydra.model.windows`,
  :mod:`~dacapo_hydra.model.predict`: one prediction block's shapes, the sliding
  windows of 'same'-padding networks, and the in-memory blockwise prediction of a
  ROI (what validation runs; `inference/` writes the same blocks to zarr).

This package imports neither `training/` nor `inference/`: both build on it.
"""
