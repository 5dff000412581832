"""The typical object size, measured on training labels in nm."""

from __future__ import annotations

import numpy as np
import pytest

from dacapo_hydra.data.roi import Roi
from dacapo_hydra.data.statistics import object_radii, typical_object_radius


class InMemory:
    """The two things `typical_object_radius` asks of an array."""

    def __init__(self, data: np.ndarray, voxel_size: tuple[float, ...]) -> None:
        self.data, self.voxel_size = data, voxel_size

    def read(self, roi: Roi) -> np.ndarray:
        begin = [int(round(b / v)) for b, v in zip(roi.begin, self.voxel_size, strict=True)]
        size = [int(round(s / v)) for s, v in zip(roi.shape, self.voxel_size, strict=True)]
        return self.data[tuple(slice(b, b + s) for b, s in zip(begin, size, strict=True))]


def discs(radius: int) -> np.ndarray:
    labels = np.zeros((96, 96), np.uint64)
    y, x = np.indices(labels.shape)
    for i, (cy, cx) in enumerate([(24, 24), (24, 24 + 2 * radius), (70, 40)], start=1):
        labels[((y - cy) ** 2 + (x - cx) ** 2 <= radius**2) & (labels == 0)] = i
    return labels


@pytest.mark.parametrize("voxel", [4.0, 250.0])
def test_radius_is_in_nm_and_follows_the_voxel_size(voxel: float) -> None:
    labels = discs(10)
    array = InMemory(labels, (voxel, voxel))
    roi = Roi((0.0, 0.0), (96 * voxel, 96 * voxel))
    radius = typical_object_radius([(array, roi)])
    assert radius == pytest.approx(10 * voxel, rel=0.1)


def test_touching_objects_are_measured_apart_and_cut_ones_left_out() -> None:
    labels = discs(8)
    labels[0:5, 60:96] = 9  # cut by the edge
    radii = object_radii(labels, (1.0, 1.0))
    assert len(radii) == 3 and np.all(radii < 9.5)


def test_no_objects_gives_none() -> None:
    array = InMemory(np.zeros((8, 8), np.uint64), (1.0, 1.0))
    assert typical_object_radius([(array, Roi((0.0, 0.0), (8.0, 8.0)))]) is None
