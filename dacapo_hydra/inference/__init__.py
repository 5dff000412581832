"""Inference: apply a trained model to volumes larger than memory, block by block.

- :mod:`~dacapo_hydra.inference.options`: what to predict or apply, and where blocks run;
- :mod:`~dacapo_hydra.inference.blocks`: the block-worker base (grids and a block's
  shapes and prediction are :mod:`dacapo_hydra.model`'s);
- :mod:`~dacapo_hydra.inference.predictor`: the worker that predicts blocks into zarr;
- :mod:`~dacapo_hydra.inference.predict`: the `predict` verb (checked plan, then run);
- :mod:`~dacapo_hydra.inference.fragments`: post-processing per block (first pass);
- :mod:`~dacapo_hydra.inference.stitch`: merging instances across faces (second pass);
- :mod:`~dacapo_hydra.inference.labels`: the blockwise post-processing verb;
- :mod:`~dacapo_hydra.inference.apply`: a run's best model, predicted and post-processed;
- :mod:`~dacapo_hydra.inference.provenance`: what made an output, checked on resume.

The outputs' OME-Zarr writers are :mod:`dacapo_hydra.data.output`'s.
"""
