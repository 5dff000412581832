"""Each array transform on a hand-made array, and specs composed as in YAML."""

from __future__ import annotations

import numpy as np
import pytest

from dacapo_hydra.data.array_spec import build_array
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.data.transforms import (
    BinarizeArray,
    ConcatArray,
    ConstantArray,
    CropArray,
    LogicalOrArray,
    MergeInstancesArray,
    MissingAnnotationsMask,
    NormalizeArray,
    ResampleArray,
    SumArray,
)
from tests.data.helpers import memory_array

LABELS = np.array([[0, 1, 1, 2], [3, 3, 0, 2], [4, 0, 5, 5], [0, 1, 2, 3]], np.uint64)


def labels(offset: tuple[float, float] = (10.0, 20.0)):
    return memory_array(LABELS, (2.0, 2.0), offset, "labels", chunk=2)


def whole(array) -> np.ndarray:
    return array.read(array.roi)


def test_normalize_minmax_and_meanstd() -> None:
    raw = memory_array(np.array([[0, 51], [102, 255]], np.uint8), (1.0, 1.0))
    np.testing.assert_allclose(whole(NormalizeArray(raw)), [[0, 0.2], [0.4, 1.0]], atol=1e-6)
    z = NormalizeArray(raw, mode="meanstd", mean=102, std=51)
    np.testing.assert_allclose(whole(z), [[-2, -1], [0, 3]])
    assert whole(z).dtype == np.float32
    with pytest.raises(ValueError, match="max .* must exceed min"):
        NormalizeArray(raw, min=5, max=5)


def test_binarize_groups_become_channels() -> None:
    out = BinarizeArray(labels(), {"a": [1, 2], "b": [5]})
    assert out.num_channels == 2 and out.channel_names == ["a", "b"]
    data = whole(out)
    np.testing.assert_array_equal(data[0], np.isin(LABELS, [1, 2]))
    np.testing.assert_array_equal(data[1], LABELS == 5)
    np.testing.assert_array_equal(whole(BinarizeArray(labels()))[0], LABELS > 0)


def test_concat_fills_and_masks_missing_channels() -> None:
    a = BinarizeArray(labels(), {"a": [1]})
    b = BinarizeArray(labels(), {"b": [2], "c": [3]})
    concat = ConcatArray({"a": a, "missing": None, "bc": b})
    assert concat.num_channels == 4
    assert concat.known == [True, False, True, True]
    data = whole(concat)
    np.testing.assert_array_equal(data[0], LABELS == 1)
    assert not data[1].any()
    np.testing.assert_array_equal(data[3], LABELS == 3)
    mask = MissingAnnotationsMask(concat)
    m = whole(mask)
    assert m.shape == (4, 4, 4)
    assert m[0].all() and not m[1].any() and m[2].all()
    annotated = memory_array((LABELS != 4).astype(np.uint8), (2.0, 2.0), (10.0, 20.0), chunk=2)
    m = whole(MissingAnnotationsMask(concat, annotated))
    np.testing.assert_array_equal(m[0], LABELS != 4)
    assert not m[1].any()


def test_crop_to_world_roi() -> None:
    crop = CropArray(labels(), begin=[12.0, 24.0], shape=[4.0, 4.0])
    assert crop.roi == Roi((12.0, 24.0), (4.0, 4.0))
    np.testing.assert_array_equal(whole(crop), LABELS[1:3, 2:4])
    np.testing.assert_array_equal(crop.read(Roi((14.0, 24.0), (2.0, 2.0))), LABELS[2:3, 2:3])
    with pytest.raises(ValueError, match="leaves the array"):
        CropArray(labels(), begin=[0.0, 0.0], shape=[4.0, 4.0])


def test_logical_or_sum_merge() -> None:
    two = BinarizeArray(labels(), {"a": [1], "b": [5]})
    np.testing.assert_array_equal(whole(LogicalOrArray(two)), np.isin(LABELS, [1, 5]))
    np.testing.assert_array_equal(whole(SumArray([labels(), labels()])), 2 * LABELS)
    other = memory_array((LABELS == 3).astype(np.uint64) * 7, (2.0, 2.0), (10.0, 20.0), chunk=2)
    merged = whole(MergeInstancesArray([labels(), other], id_stride=100))
    assert merged[1, 0] == 107 and merged[3, 3] == 107  # the later source wins
    assert merged[0, 1] == 1 and merged[2, 2] == 5 and merged[0, 0] == 0
    with pytest.raises(ValueError, match="share voxel size and ROI"):
        SumArray([labels(), labels((0.0, 0.0))])


def test_constant_mask() -> None:
    ones = ConstantArray(labels())
    assert ones.roi == labels().roi and ones.num_channels is None
    assert whole(ones).dtype == np.uint8 and whole(ones).all()


def test_resample_labels_nearest_and_raw_mean() -> None:
    fine = ResampleArray(labels(), (1.0, 1.0))
    assert fine.spatial_shape == (8, 8) and fine.roi == labels().roi
    np.testing.assert_array_equal(whole(fine), np.repeat(np.repeat(LABELS, 2, 0), 2, 1))
    # An unaligned read: voxels 3..5 of the fine grid.
    np.testing.assert_array_equal(
        fine.read(Roi((13.0, 23.0), (2.0, 3.0))),
        np.repeat(np.repeat(LABELS, 2, 0), 2, 1)[3:5, 3:6],
    )
    coarse = ResampleArray(labels(), (4.0, 4.0))
    np.testing.assert_array_equal(whole(coarse), LABELS[1::2, 1::2])
    raw = memory_array(np.arange(16, dtype=np.uint8).reshape(4, 4), (2.0, 2.0))
    mean = whole(ResampleArray(raw, (4.0, 4.0), method="mean"))
    np.testing.assert_allclose(mean, [[2.5, 4.5], [10.5, 12.5]])
    with pytest.raises(ValueError, match="not an integer factor"):
        ResampleArray(raw, (3.0, 3.0))


def test_specs_compose_like_yaml(tmp_path) -> None:
    import zarr

    root = zarr.open_group(str(tmp_path / "d.zarr"), mode="w")
    root.create_array("labels", shape=LABELS.shape, chunks=(2, 2), dtype="uint64")[...] = LABELS
    root["labels"].attrs.update({"voxel_size": [2, 2], "offset": [10, 20]})
    source = {"container": str(tmp_path / "d.zarr"), "dataset": "labels"}
    spec = {
        "type": "concat",
        "channels": {
            "mito": {"type": "binarize", "source": source, "groups": {"mito": [1, 2]}},
            "er": None,
        },
    }
    array = build_array(spec, "datasplit.train[0].gt")
    assert isinstance(array, ConcatArray) and array.known == [True, False]
    np.testing.assert_array_equal(whole(array)[0], np.isin(LABELS, [1, 2]))
    with pytest.raises(ValueError, match=r"datasplit.train\[0\].gt.type 'binarise' is not"):
        build_array({"type": "binarise", "source": source}, "datasplit.train[0].gt")
    with pytest.raises(ValueError, match=r"gt \(crop\): bad parameters"):
        build_array({"type": "crop", "source": source, "roi": [1]}, "gt")
    with pytest.raises(KeyError, match=r"gt.channels.mito.source: dataset 'nope'"):
        build_array(
            {
                "type": "concat",
                "channels": {"mito": {"type": "binarize", "source": {**source, "dataset": "nope"}}},
            },
            "gt",
        )
