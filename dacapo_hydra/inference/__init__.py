"""Inference: apply a trained model to volumes larger than memory, block by block.

- :mod:`~dacapo_hydra.inference.options`: what to predict or apply, and where blocks run;
- :mod:`~dacapo_hydra.inference.blocks`: block grids, ledgers, the block-worker base, running;
- :mod:`~dacapo_hydra.inference.plan`: a prediction block's shapes;
- :mod:`~dacapo_hydra.inference.predictor`: one block's prediction and its worker;
- :mod:`~dacapo_hydra.inference.predict`: the `predict` verb (checked plan, then run);
- :mod:`~dacapo_hydra.inference.fragments`: post-processing per block (first pass);
- :mod:`~dacapo_hydra.inference.stitch`: merging instances across faces (second pass);
- :mod:`~dacapo_hydra.inference.labels`: the blockwise post-processing verb;
- :mod:`~dacapo_hydra.inference.apply`: a run's best model, predicted and post-processed;
- :mod:`~dacapo_hydra.inference.provenance`: what made an output, checked on resume.

The outputs' OME-Zarr writers are :mod:`dacapo_hydra.data.output`'s.
"""
