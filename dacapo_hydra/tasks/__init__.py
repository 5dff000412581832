"""Tasks: targets and weights from ground truth, loss, activation, post-processing, scores.

One task per module: `distance`, `affinities`, `one_hot`, `inner_distance`,
`hot_distance`, `dummy`; the interface is :class:`~dacapo_hydra.tasks.base.Task`.
"""
