"""What every task shares: its criterion, chosen once and checked; class maps."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from dacapo_hydra.tasks.affinities import AffinitiesTask
from dacapo_hydra.tasks.base import Task
from dacapo_hydra.tasks.classes import ClassMap
from dacapo_hydra.tasks.distance import DistanceTask
from dacapo_hydra.tasks.hot_distance import HotDistanceTask
from dacapo_hydra.tasks.inner_distance import InnerDistanceTask
from dacapo_hydra.tasks.one_hot import OneHotTask

VS = (4.0, 4.0)
# Each task with its default criterion, and another of its scores.
TASKS: dict[str, tuple[Callable[..., Task], str, str]] = {
    "distance": (lambda **kw: DistanceTask(2, VS, **kw), "dice", "jaccard"),
    "distance_instances": (
        lambda **kw: DistanceTask(2, VS, instances=True, **kw),
        "detection_f1",
        "voi",
    ),
    "hot_distance": (lambda **kw: HotDistanceTask(2, VS, **kw), "dice", "jaccard"),
    "inner_distance": (lambda **kw: InnerDistanceTask(2, VS, **kw), "detection_f1", "voi"),
    "affinities": (lambda **kw: AffinitiesTask(2, VS, **kw), "detection_f1", "voi"),
    "one_hot": (lambda **kw: OneHotTask(2, VS, **kw), "dice", "jaccard"),
}


@pytest.mark.parametrize("name", TASKS)
def test_the_criterion_is_the_default_or_the_given_score(name: str) -> None:
    make, default, other = TASKS[name]
    assert make().criterion == default
    assert make(criterion=None).criterion == default
    task = make(criterion=other)
    assert task.criterion == other and other in task.score_directions()


@pytest.mark.parametrize("name", TASKS)
def test_a_criterion_that_is_no_score_is_refused(name: str) -> None:
    make, _, _ = TASKS[name]
    with pytest.raises(ValueError, match=r"task\.criterion: 'nope' is not a score of \w+Task"):
        make(criterion="nope")


def test_class_map() -> None:
    gt = np.array([0, 1, 2, 3, 4])
    assert ClassMap(["fg"], None).masks(gt).tolist() == [[False, True, True, True, True]]
    assert ClassMap(["a", "b"], None).indices(gt).tolist() == [0, 1, 2, 0, 0]
    assert ClassMap(["a", "b"], [[1, 3], [4]]).indices(gt).tolist() == [0, 1, 0, 1, 2]
    with pytest.raises(ValueError, match="class_ids"):
        ClassMap(["a", "b"], [[1]])
