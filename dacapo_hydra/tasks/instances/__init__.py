"""Instance post-processing routes: from activated predictions to instance labels.

One route per module: mutex watershed on affinities, fragments plus hierarchical
agglomeration on affinities, seeded watershed on distances; and the size filter
that every route ends with. Each works on numpy arrays of one block or volume;
:mod:`dacapo_hydra.inference.labels` runs them blockwise and applies the size
filter globally.
"""
