"""Instance routes on hand-made volumes where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from dacapo_hydra.tasks.affinities import AffinitiesTask
from dacapo_hydra.tasks.distance import DistanceTask
from dacapo_hydra.tasks.instances.agglomeration import agglomerate, fragments
from dacapo_hydra.tasks.instances.size_filter import min_size_grid, remove_small


def touching_discs() -> np.ndarray:
    """Two discs of radius 10 whose centres are 17 voxels apart: one neck, two objects."""
    y, x = np.indices((32, 48))
    a = (y - 16) ** 2 + (x - 14) ** 2 <= 100
    b = (y - 16) ** 2 + (x - 31) ** 2 <= 100
    gt = np.zeros((32, 48), np.uint64)
    gt[a] = 1
    gt[b & (x >= 23)] = 2
    gt[b & ~a] = 2
    return gt


def test_touching_discs_separate_under_the_distance_route() -> None:
    task = DistanceTask(2, (250.0, 250.0), instances=True, object_radius=2500.0)
    gt = touching_discs()
    prediction = task.scale(task.distances(gt)).astype(np.float32)
    assert task.criterion == "detection_f1"
    best = max(
        task.evaluate(output, gt, None)["detection_f1"]
        for _, output in task.post_process_grid(prediction)
    )
    assert best == 1.0
    labels = task.post_process(prediction, {"h": 500.0, "min_size": 0})[0]
    assert len(np.unique(labels)) == 3
    # Thresholding the same distance merges them: the route is what separates them.
    assert np.unique(labels[gt == 1]).size == 1 and labels[gt == 1][0] != labels[gt == 2][0]


def test_semantic_distance_stays_binary() -> None:
    task = DistanceTask(2, (8.0, 8.0))
    assert not task.instances and task.criterion == "dice"
    assert all("threshold" in p for p in task.parameter_grid())


def test_a_three_voxel_fragment_is_removed_by_the_size_filter() -> None:
    labels = np.zeros((10, 10), np.uint64)
    labels[1:6, 1:6] = 4
    labels[8, 7:10] = 9  # 3 voxels
    out = remove_small(labels, 4)
    assert out.max() == 1 and out[8, 7:10].max() == 0 and (out[1:6, 1:6] == 1).all()
    assert (remove_small(labels, 3) > 0).sum() == 28


def test_a_background_fragment_worsens_the_criterion() -> None:
    task = AffinitiesTask(2, (4.0, 4.0))
    gt = touching_discs()
    perfect = task.evaluate(gt, gt, None)
    fragmented = gt.copy()
    fragmented[0, 0:3] = 7
    worse = task.evaluate(fragmented, gt, None)
    assert worse[task.criterion] < perfect[task.criterion] == 1.0


def test_affinity_routes_recover_noisy_discs() -> None:
    rng = np.random.default_rng(0)
    gt = touching_discs()
    task = AffinitiesTask(2, (4.0, 4.0), object_radius=40.0)
    affs, _ = task.affinities(gt, np.ones(gt.shape))
    noisy = np.clip(affs * 0.8 + 0.1 + rng.normal(0, 0.1, affs.shape), 0, 1).astype(np.float32)
    grid = list(task.post_process_grid(noisy))
    assert len(grid) == len(task.parameter_grid())
    routes = {p["route"] for p, _ in grid}
    assert routes == {"mutex", "agglomeration", "mask"}
    for params, output in grid:
        np.testing.assert_array_equal(output, task.post_process(noisy, params))
    f1 = {
        p["route"]: max(
            task.evaluate(o, gt, None)["detection_f1"] for q, o in grid if q["route"] == p["route"]
        )
        for p, _ in grid
    }
    assert f1 == {"mutex": 1.0, "agglomeration": 1.0, "mask": 1.0}


def test_agglomeration_merges_more_at_lower_thresholds() -> None:
    gt = touching_discs()
    task = AffinitiesTask(2, (4.0, 4.0))
    affs, _ = task.affinities(gt, np.ones(gt.shape))
    affs = affs.astype(np.float32) * 0.9 + 0.05
    affs[:, gt == 2] = np.maximum(affs[:, gt == 2], 0.05)
    frags = fragments(affs, task.neighborhood, task.voxel_size)
    merged = agglomerate(frags, affs, task.neighborhood, [0.9, 0.5, 0.01])
    counts = [len(np.unique(merged[t])) - 1 for t in (0.9, 0.5, 0.01)]
    assert counts[0] >= counts[1] >= counts[2] and counts[1] == 2


@pytest.mark.parametrize(
    ("vs", "radius"), [((8.0, 8.0, 8.0), 64.0), ((1000.0, 250.0, 250.0), 3000.0)]
)
def test_size_grid_follows_the_objects(vs: tuple[float, ...], radius: float) -> None:
    sizes = min_size_grid(None, radius, vs)
    volume = 4 / 3 * np.pi * radius**3 / np.prod(vs)
    assert sizes[0] == 0 and sizes[-1] == round(0.25 * volume)
    assert min_size_grid([5, 10], radius, vs) == [5, 10]
    with pytest.raises(ValueError, match="task.min_sizes"):
        min_size_grid([-1], radius, vs)


def test_lengths_below_a_voxel_or_above_the_crop_name_the_key() -> None:
    with pytest.raises(ValueError, match="task.scale_factor: '0.5vx' is 4 nm, below 1 voxel"):
        DistanceTask(2, (8.0, 8.0), scale_factor="0.5vx")
    task = DistanceTask(2, (250.0, 250.0), scale_factor="40vx")
    with pytest.raises(ValueError, match="task.scale_factor: 10000 nm is more than the training"):
        task.check_crop((7000.0, 7000.0))
    task.check_crop((20000.0, 20000.0))


@pytest.mark.parametrize("voxel", [4.0, 250.0])
def test_distance_defaults_follow_the_measured_objects(voxel: float) -> None:
    radius = 12 * voxel  # the same objects, imaged at either voxel size
    task = DistanceTask(2, (voxel, voxel), object_radius=radius)
    assert task.scale_factor == radius and task.clip_distance == 2 * radius
    assert task.tol_distance == pytest.approx(0.8 * radius)
    gt = touching_discs()
    target = task.scale(task.distances(gt))[0]
    # Inside a disc of radius 10 voxels the target still varies: not flat, not binary.
    inside = target[gt > 0]
    assert inside.min() < 0.1 and 0.55 < inside.max() < 0.8
    fallback = DistanceTask(2, (voxel, voxel))
    assert fallback.scale_factor == 6 * voxel


def test_mask_seeds_split_objects_wider_than_the_network_sees() -> None:
    task = DistanceTask(2, (250.0, 250.0), instances=True, object_radius=2500.0)
    gt = touching_discs()
    # A network with a small field of view: its distance levels off 2 voxels in.
    saturated = task.scale(np.minimum(task.distances(gt), 500.0)).astype(np.float32)
    by_prediction = task.post_process(saturated, {"seeds": "prediction", "h": 125.0})
    by_mask = task.post_process(saturated, {"seeds": "mask", "h": 125.0})
    assert by_prediction.max() == 1  # the plateau hides the neck
    assert by_mask.max() == 2 and task.evaluate(by_mask, gt, None)["detection_f1"] == 1.0
