"""Instance post-processing routes: from activated predictions to instance labels.

One route per module, each a :class:`~dacapo_hydra.tasks.instances.route.Route`
that a task lists in its YAML: mutex watershed on affinities (`MutexWatershed`),
fragments plus hierarchical agglomeration on affinities (`Agglomeration`), the
foreground split at its necks (`MaskWatershed`); seeded watershed on distances
(used by the distance tasks); and the shared maths: region graphs and the size
filter that every route ends with. Each works on numpy arrays of one block or
volume; :mod:`dacapo_hydra.inference.labels` runs them blockwise and applies the
size filter globally.
"""
