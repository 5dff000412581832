"""Property: blockwise agglomeration is the whole volume's, given the same fragments.

Blockwise labels make fragments per block (a face cuts a whole-volume fragment in
two), then solve the whole volume's region graph. Given fragments `F` (here read from
the prediction, so that they do not depend on the blocks except through the cut), the
labels equal :func:`~dacapo_hydra.tasks.instances.agglomeration.agglomerate` of `F`
cut at the block faces, on the whole volume, with the global size filter: every
edge's mean affinity is over the same voxel pairs whatever the block shape.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from dacapo_hydra.data.output import open_output
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.fragments import Source
from dacapo_hydra.inference.labels import plan_labels
from dacapo_hydra.inference.options import Execution
from dacapo_hydra.tasks.affinities import AffinitiesTask
from dacapo_hydra.tasks.instances.agglomeration import AffinityGraph, agglomerate
from dacapo_hydra.tasks.instances.size_filter import remove_small
from tests.properties.test_blockwise_connected_components import SCRATCH, assert_same_partition

OFFSETS = ((-1, 0, 0), (0, -1, 0), (0, 0, -1))


class GivenFragments(AffinityGraph):
    """The agglomeration route with the fragments given in the prediction's last channel."""

    def fragments(self, prediction: np.ndarray) -> np.ndarray:
        return np.rint(prediction[-1]).astype(np.uint64)


class Task(AffinitiesTask):
    def graph_route(self, params: dict) -> AffinityGraph | None:
        return GivenFragments(OFFSETS, self.voxel_size, float(params["threshold"]))


def cut(fragments: np.ndarray, block: tuple[int, ...]) -> np.ndarray:
    """Fragments split where block faces cross them (a distinct id per block piece)."""
    index = np.indices(fragments.shape)
    linear = np.ravel_multi_index(
        tuple(i // b for i, b in zip(index, block, strict=True)),
        tuple(-(-s // b) for s, b in zip(fragments.shape, block, strict=True)),
    )
    pieces = np.where(fragments > 0, linear.astype(np.uint64) * 10**6 + fragments, 0)
    return pieces


@settings(max_examples=5, deadline=None, database=None)
@given(
    st.integers(0, 2**32 - 1),
    st.tuples(*(st.integers(3, 9) for _ in range(3))),
    st.sampled_from([0.3, 0.5, 0.7]),
    st.integers(0, 12),
)
def test_blockwise_agglomeration_is_the_whole_volumes_given_the_fragments(
    seed: int, block: tuple[int, ...], threshold: float, min_size: int
) -> None:
    rng = np.random.default_rng(seed)
    shape = (10, 12, 11)
    # Fragments: Voronoi cells of random seeds, some voxels background.
    seeds = np.zeros(shape, np.int32)
    seeds[tuple(rng.integers(0, s, 12) for s in shape)] = np.arange(1, 13)
    _, nearest = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    fragments = seeds[tuple(nearest)].astype(np.uint64)
    fragments[rng.random(shape) < 0.1] = 0
    affinities = ndimage.gaussian_filter(rng.random((3, *shape)), (0, 1, 1, 1)).astype(np.float32)
    affinities = (affinities - affinities.min()) / np.ptp(affinities)
    vs = (4.0, 4.0, 4.0)
    roi = Roi((0.0,) * 3, tuple(s * v for s, v in zip(shape, vs, strict=True)))
    params = {"route": "agglomeration", "threshold": threshold, "min_size": min_size}
    with tempfile.TemporaryDirectory(dir=SCRATCH) as folder:
        path = Path(folder) / "pred.zarr"
        array = open_output(path, "prediction", roi, vs, 4, "float32", block)
        array[...] = np.concatenate([affinities, fragments[None].astype(np.float32)])
        job = plan_labels(
            Task(3, vs, neighborhood=[list(o) for o in OFFSETS]),
            params,
            Source.open(path, "prediction"),
            Path(folder) / "out.zarr",
            "labels",
            block_shape=block,
        )
        objects = job.run(Execution(progress=False))
        got = zarr.open_group(str(Path(folder) / "out.zarr"))["labels/s0"][:]
    pieces = cut(fragments, block)
    want = remove_small(agglomerate(pieces, affinities, OFFSETS, [threshold])[threshold], min_size)
    assert_same_partition(got, want)
    assert objects == want.max()
    assert np.array_equal(np.unique(got[got != 0]), np.arange(1, int(objects) + 1))
