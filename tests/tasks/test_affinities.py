"""Affinity edges at known faces; the mask reaches the loss; LSDs as the lsds package."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dacapo_hydra.tasks.affinities import AffinitiesTask
from dacapo_hydra.tasks.lsds import local_shape_descriptors, num_lsd_channels


def _two_cells() -> np.ndarray:
    gt = np.zeros((6, 8), np.uint64)
    gt[:, 1:4] = 1
    gt[:, 4:7] = 2  # touches label 1 across the face x = 3 | 4
    return gt


def test_edges_at_known_faces() -> None:
    task = AffinitiesTask(2, (4.0, 4.0), neighborhood=[[0, -1], [-1, 0], [0, 2]])
    affs, known = task.affinities(_two_cells(), np.ones((6, 8)))
    # Channel 0 links x and x - 1.
    assert affs[0, 2, 2] == 1  # 1-1
    assert affs[0, 2, 4] == 0  # 2-1 across the touching face
    assert affs[0, 2, 5] == 1  # 2-2
    assert affs[0, 2, 1] == 0  # 1-background
    assert affs[0, 2, 0] == 0 and not known[0, 2, 0]  # leaves the crop
    # Channel 1 links y and y - 1: inside a column every edge is 1.
    assert affs[1, 3, 2] == 1 and affs[1, 0, 2] == 0 and not known[1, 0, 2]
    # Channel 2 links x and x + 2 (long range).
    assert affs[2, 2, 1] == 1 and affs[2, 2, 2] == 0 and affs[2, 2, 4] == 1
    assert not known[2, 2, 6:].any()


def test_background_as_object() -> None:
    task = AffinitiesTask(2, (4.0, 4.0), background_as_object=True)
    affs, _ = task.affinities(_two_cells(), np.ones((6, 8)))
    # Default neighbourhood: channel 0 links y and y - 1.
    assert affs[0, 0, 0] == 0  # no neighbour
    assert affs[0, 1, 0] == 1  # background to background
    assert affs[1, 1, 1] == 0  # cell 1 to background
    gt = np.zeros((4, 4), np.uint64)
    assert task.affinities(gt, np.ones((4, 4)))[0][:, 1:, 1:].all()


def test_mask_reaches_the_loss_without_lsds() -> None:
    """DaCapo's affinities loss ignores the mask when LSDs are off; ours must not."""
    task = AffinitiesTask(2, (4.0, 4.0))
    gt = _two_cells()
    mask = np.ones(gt.shape, np.uint8)
    mask[:, 5:] = 0
    target, weight = task.targets(gt, mask)
    assert not weight[:, :, 5:].any()
    t, w = torch.from_numpy(target)[None], torch.from_numpy(weight)[None]
    prediction = torch.zeros(1, 2, 6, 8)
    changed = prediction.clone()
    changed[..., 5:] = 100.0  # wild predictions where nothing is annotated
    assert task.loss(prediction, t, w).item() == pytest.approx(task.loss(changed, t, w).item())


def test_lsd_channels_follow_the_affinities() -> None:
    task = AffinitiesTask(3, (8.0, 8.0, 8.0), lsds=True, num_lsd_voxels=2)
    assert task.num_channels == 3 + 10
    gt = np.zeros((12, 12, 12), np.uint64)
    gt[2:10, 2:10, 2:10] = 5
    mask = np.ones(gt.shape, np.uint8)
    mask[0] = 0
    target, weight = task.targets(gt, mask)
    assert target.shape == weight.shape == (13, 12, 12, 12)
    assert np.allclose(target[3:], local_shape_descriptors(gt, (16.0,) * 3, (8.0,) * 3))
    assert not weight[:, 0].any()
    loss = task.loss(
        torch.zeros(1, 13, 12, 12, 12),
        torch.from_numpy(target)[None],
        torch.from_numpy(weight)[None],
    )
    assert torch.isfinite(loss)


def test_lsds_by_hand() -> None:
    """A cube far larger than the Gaussian: its centre sees a symmetric neighbourhood."""
    gt = np.zeros((40, 40, 40), np.uint64)
    gt[4:36, 4:36, 4:36] = 1
    sigma = 4.0  # nm, voxel 1 nm: the filter reaches 12 voxels
    lsds = local_shape_descriptors(gt, (sigma,) * 3, (1.0, 1.0, 1.0))
    assert lsds.shape == (num_lsd_channels(3), 40, 40, 40)
    centre = lsds[:, 20, 20, 20]
    assert centre[:3] == pytest.approx([0.5] * 3, abs=1e-4)  # no offset to the centre of mass
    # Variance of a Gaussian-weighted full neighbourhood is sigma², scaled by sigma²: 1.
    assert centre[3:6] == pytest.approx([1.0] * 3, abs=2e-2)
    assert centre[6:9] == pytest.approx([0.5] * 3, abs=1e-4)  # no correlation
    assert centre[9] == pytest.approx(1.0, abs=1e-4)  # full mass
    # On the cube's face at z = 4 the mass is half and the centre of mass lies inside (+z).
    face = lsds[:, 4, 20, 20]
    assert face[9] == pytest.approx(0.5, abs=0.05)
    assert face[0] > 0.6 and face[1:3] == pytest.approx([0.5, 0.5], abs=1e-4)
    assert not lsds[:, 0].any()  # background


def test_lsds_downsampled_match_shape() -> None:
    gt = np.zeros((9, 10, 11), np.uint64)
    gt[2:8, 2:8, 2:9] = 3
    lsds = local_shape_descriptors(gt, (6.0,) * 3, (2.0,) * 3, downsample=2)
    assert lsds.shape == (10, 9, 10, 11)
    assert not lsds[:, gt == 0].any() and lsds[9, gt == 3].min() > 0


def test_mutex_watershed_splits_touching_cells() -> None:
    task = AffinitiesTask(2, (4.0, 4.0))
    gt = _two_cells()
    target, _ = task.targets(gt, np.ones(gt.shape))
    segmentation = task.post_process(target, {"bias": 0.5})
    assert segmentation.dtype == np.uint64
    assert len(np.unique(segmentation[gt == 1])) == 1
    assert len(np.unique(segmentation[gt == 2])) == 1
    assert segmentation[0, 2] != segmentation[0, 5] and (segmentation[gt == 0] == 0).all()


def test_bad_neighbourhood_is_named() -> None:
    with pytest.raises(ValueError, match="neighborhood"):
        AffinitiesTask(3, (4.0, 4.0, 4.0), neighborhood=[[0, 1]])
