"""Tasks: targets and weights from ground truth, loss, activation, post-processing, scores.

One task per module: `distance`, `affinities`, `one_hot`, `inner_distance`,
`hot_distance`, `dummy`; the interface is :class:`~dacapo_hydra.tasks.base.Task`.
What several tasks share has its own module:

- `balance`: class-balancing weights (:class:`~dacapo_hydra.tasks.balance.ClassBalancer`);
- `distances`: distance maths (signed, inner, and where a crop can tell it);
- `scaled_distance`: the base of the tasks that learn `tanh(d / scale)` per class;
- `distance_instances`, `binary`: instance post-processing and binary scores (mixins);
- `classes`, `lsds`, `shifts`: class maps, local shape descriptors, neighbour pairs;
- `instances/`: the post-processing routes (watersheds, agglomeration, size filter).

A new task subclasses `Task` in a module of its own, calls
:meth:`~dacapo_hydra.tasks.base.Task.set_criterion` last in its `__init__`, and gets
a schema in :mod:`dacapo_hydra.config.task` and a YAML in `conf/task/`.
"""
