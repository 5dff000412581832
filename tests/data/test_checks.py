"""Data checks before work starts: each bad input named in one line, on real zarr on disk."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig

from dacapo_hydra.data.checks import check_split, raw_margin
from dacapo_hydra.data.chunk_checks import sample_positions
from dacapo_hydra.data.datasplit import DataSplit
from dacapo_hydra.data.normalize import Normalizer
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.errors import ConfigError, DataError
from dacapo_hydra.training.run import train
from tests.data.helpers import volume_config, write_volume


def _refusal(cfg: dict, **kwargs: object) -> str:
    """The one-line message check_split refuses the datasplit `cfg` with.

    The normalisation is given, so opening the split reads no raw.
    """
    split = DataSplit.from_config(cfg, Normalizer("minmax", 0.0, 100.0))
    with pytest.raises(DataError) as caught:
        check_split(split, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    return message


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_sound_split_passes_and_logs_what_it_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    split = DataSplit.from_config(volume_config(write_volume(tmp_path / "v.zarr"), validate=True))
    with caplog.at_level(logging.INFO, logger="dacapo_hydra.data.checks"):
        check_split(split)
    # 64 keys per array: raw, gt... (sparse by default: not listed) for train and validate.
    assert "128 chunk keys compared, 128 raw chunks decoded (65536 voxels)" in caplog.text


@pytest.mark.parametrize(
    ("layout", "deleted", "named"),
    [
        ({}, "raw/c/3/3/3", "c/3/3/3"),
        ({"zarr_format": 2}, "raw/3.3.3", "3.3.3"),
        ({"shard": 16}, "raw/c/1/1/1", "c/1/1/1"),
    ],
)
def test_a_deleted_raw_chunk_is_named(
    tmp_path: Path, layout: dict, deleted: str, named: str
) -> None:
    path = write_volume(tmp_path / "v.zarr", **layout)
    (path / deleted).unlink()
    message = _refusal(volume_config(path))
    assert message.startswith(f"datasplit.train[0] (d).raw ({path}:raw): 1 of the ")
    assert f"missing from the store ({named})" in message
    assert "`sparse: true`" in message


def test_many_missing_chunks_show_the_first_few_and_the_count(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "v.zarr")
    for x in range(4):
        for y in range(2):
            (path / f"raw/c/0/{y}/{x}").unlink()
    message = _refusal(volume_config(path))
    assert "8 of the 64 chunks" in message
    assert "(c/0/0/0, c/0/0/1, c/0/0/2, c/0/0/3, c/0/1/0, ...)" in message


def test_sparse_arrays_may_miss_chunks(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "v.zarr")
    (path / "raw/c/3/3/3").unlink()
    (path / "gt/c/0/0/0").unlink()
    sparse_raw = {"container": str(path), "dataset": "raw", "sparse": True}
    check_split(DataSplit.from_config(volume_config(path, raw=sparse_raw)))
    # Ground truth is sparse by default; `sparse: false` asks for every chunk.
    dense_gt = {"container": str(path), "dataset": "gt", "sparse": False}
    message = _refusal(volume_config(path, raw=sparse_raw, gt=dense_gt))
    assert message.startswith(f"datasplit.train[0] (d).gt ({path}:gt): 1 of the 64 chunks")


def test_only_the_region_used_must_be_there(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "v.zarr", shape=(64, 64, 64), chunk=16)
    labels = zarr.open_group(str(path), mode="r+").create_array(
        "small_gt", shape=(8, 8, 8), chunks=(8, 8, 8), dtype="uint8"
    )
    labels[...] = 1
    labels.attrs.update({"voxel_size": [8.0] * 3, "offset": [0.0] * 3})
    (path / "raw/c/3/3/3").unlink()  # far from the labelled corner: never read
    small = volume_config(path, gt={"container": str(path), "dataset": "small_gt"}, mask=None)
    check_split(DataSplit.from_config(small), margin=(16.0, 16.0, 16.0))
    (path / "raw/c/0/0/0").unlink()  # within the margin: read by crops near the labels
    message = _refusal(small, margin=(16.0, 16.0, 16.0))
    assert "1 of the 1 chunks inside the region used [0:80, 0:80, 0:80] nm" in message
    assert "(c/0/0/0)" in message
    # Without a margin the whole raw is the region: the far chunk is missed too.
    assert "2 of the 64 chunks" in _refusal(small)


def test_a_transformed_raw_is_checked_through_its_zarr_array(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "v.zarr")
    (path / "raw/c/3/3/3").unlink()  # outside the crop: never read
    source = {"container": str(path), "dataset": "raw"}
    cropped = {"type": "crop", "source": source, "begin": [0, 0, 0], "shape": [128] * 3}
    check_split(DataSplit.from_config(volume_config(path, raw=cropped)))
    (path / "raw/c/0/1/0").unlink()
    message = _refusal(volume_config(path, raw=cropped))
    assert message.startswith(f"datasplit.train[0] (d).raw ({path}:raw): 1 of the 8 chunks")


def test_a_truncated_raw_chunk_is_named_before_training(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "v.zarr")
    _truncate(path / "raw/c/3/0/2")
    message = _refusal(volume_config(path))
    assert message.startswith(
        f"datasplit.train[0] (d).raw ({path}:raw): chunk c/3/0/2 cannot be decoded "
        "(RuntimeError: Zstd decompression error"
    )


def test_a_truncated_chunk_read_mid_run_is_named(tmp_path: Path) -> None:
    # A chunk the sample skips (or truncated after the checks) fails when a crop reads it.
    path = write_volume(tmp_path / "v.zarr")
    _truncate(path / "gt/c/1/2/3")
    gt = DataSplit.from_config(volume_config(path)).train[0].gt
    assert gt.read(Roi((0.0, 0.0, 0.0), (64.0, 64.0, 64.0))).all()  # other chunks read
    with pytest.raises(DataError) as caught:
        gt.read(Roi((0.0, 64.0, 128.0), (128.0, 128.0, 128.0)))
    assert str(caught.value).startswith(f"{path}:gt: chunk c/1/2/3 cannot be decoded (")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("zarr_format", "broken"),
    [(3, "raw/zarr.json"), (3, "zarr.json"), (2, "gt/.zarray"), (2, "mask/.zattrs")],
)
def test_corrupt_metadata_names_the_file(tmp_path: Path, zarr_format: int, broken: str) -> None:
    path = write_volume(tmp_path / "v.zarr", zarr_format=zarr_format)
    (path / broken).write_text('{"zarr_format": 3, "node_type": ')
    with pytest.raises(DataError) as caught:
        DataSplit.from_config(volume_config(path))
    message = str(caught.value)
    assert f"{path / broken}: zarr metadata is not valid JSON (JSONDecodeError: " in message
    assert message.startswith("datasplit.train[0].")
    assert "\n" not in message


def test_labels_without_an_object_are_refused(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "v.zarr")
    zarr.open_array(str(path / "gt"), mode="r+")[...] = 0
    message = _refusal(volume_config(path))
    assert message.startswith(
        f"datasplit.train[0] (d): the ground truth {path}:gt holds no object in the "
        "labelled region [0:256, 0:256, 0:256] nm (every label is 0)"
    )


def test_labels_all_masked_out_are_refused(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "v.zarr")
    zarr.open_array(str(path / "mask"), mode="r+")[...] = 0
    message = _refusal(volume_config(path))
    assert f"every nonzero label lies where the mask {path}:mask is 0" in message


def test_empty_validation_labels_are_refused(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "v.zarr")
    empty = write_volume(tmp_path / "empty.zarr")
    zarr.open_array(str(empty / "gt"), mode="r+")[...] = 0
    cfg = volume_config(path, validate=True)
    cfg["validate"][0]["gt"] = {"container": str(empty), "dataset": "gt"}
    cfg["validate"][0]["allow_empty"] = True  # validation can't score an empty ground truth
    message = _refusal(cfg)
    assert message.startswith(f"datasplit.validate[0] (v): the ground truth {empty}:gt holds")


def test_a_negative_training_dataset_may_be_empty(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "v.zarr")
    empty = write_volume(tmp_path / "empty.zarr")
    zarr.open_array(str(empty / "gt"), mode="r+")[...] = 0
    negative = volume_config(empty, allow_empty=True)["train"][0]
    cfg = volume_config(path)
    cfg["train"].append({**negative, "name": "negative"})
    check_split(DataSplit.from_config(cfg))
    # ... but not every training dataset.
    message = _refusal({**cfg, "train": [negative]})
    assert message.startswith("no training dataset holds an object: datasplit.train[0] (d)")


def test_empty_labels_stored_sparsely_are_refused_without_reading(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "v.zarr")
    for chunk in (path / "gt/c").rglob("*"):
        if chunk.is_file():
            chunk.unlink()  # as zarr writes all-zero labels: no chunk at all
    assert "(every label is 0)" in _refusal(volume_config(path))


@pytest.mark.parametrize(("value", "kind"), [(np.nan, "NaN"), (np.inf, "infinity")])
def test_nan_far_from_the_centre_is_found(tmp_path: Path, value: float, kind: str) -> None:
    path = write_volume(tmp_path / "v.zarr", shape=(64, 64, 64), chunk=16)
    zarr.open_array(str(path / "raw"), mode="r+")[61, 2, 60] = value
    message = _refusal(volume_config(path))
    assert message == (
        f"datasplit.train[0] (d).raw ({path}:raw) holds {kind} at voxel [61, 2, 60] "
        "(world [488.0, 16.0, 480.0] nm, chunk c/3/0/3; 1 non-finite values in that chunk); "
        "raw must be finite: fill those voxels or leave that region out"
    )


def test_a_nan_section_is_found_by_a_small_sample(tmp_path: Path) -> None:
    # 64 chunks, 4 sampled (the diagonal): every z slab of chunks holds one.
    path = write_volume(tmp_path / "v.zarr", shape=(64, 64, 64), chunk=16)
    zarr.open_array(str(path / "raw"), mode="r+")[58] = np.nan
    message = _refusal(volume_config(path), sample_voxels=4 * 16**3)
    assert (
        "holds NaN at voxel [58, 48, 48] (world [464.0, 384.0, 384.0] nm, chunk c/3/3/3" in message
    )


def test_integer_raw_is_decoded_but_not_searched(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "v.zarr", raw_dtype="uint8")
    check_split(DataSplit.from_config(volume_config(path)))


def test_raw_margin_is_the_largest_input_diagonal() -> None:
    margin = raw_margin((4.0, 4.0), (3, 4), (6, 8))
    assert margin == pytest.approx((40.0, 40.0))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 9), min_size=1, max_size=4),
    st.integers(1, 40),
)
def test_sample_positions_spread_over_the_grid(grid: list[int], count: int) -> None:
    picks = sample_positions(grid, count)
    assert 1 <= len(picks) <= count and len(set(picks)) == len(picks)
    assert all(0 <= i < n for p in picks for i, n in zip(p, grid, strict=True))
    if max(grid) <= count:
        # Every slab of chunks along every axis holds a sampled chunk.
        for axis, n in enumerate(grid):
            assert {p[axis] for p in picks} == set(range(n))


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (
            "deleted",
            r"^datasplit\.train\[0\] \(synthetic_3d_train\)\.raw \(.*:train/raw/s0\): "
            r"1 of the 8 chunks .* \(c/1/1/1\)",
        ),
        ("truncated", r"^.*:train/raw/s0: chunk c/1/1/1 cannot be decoded \("),
        (
            "not json",
            r"^datasplit\.train\[0\]\.raw: .*/train/raw/s0/zarr\.json: zarr metadata "
            r"is not valid JSON",
        ),
        (
            "empty",
            r"^datasplit\.train\[0\] \(synthetic_3d_train\): the ground truth "
            r".*:train/raw/labels/labels/s0 holds no object",
        ),
    ],
    ids=["deleted", "truncated", "not json", "empty"],
)
def test_damaged_data_is_refused_before_a_run_exists(
    compose_tiny: Callable[..., DictConfig], tmp_path: Path, damage: str, named: str
) -> None:
    container = tmp_path / "synthetic.zarr"
    cfg = compose_tiny(overrides=[f"datasplit.synthetic.container={container}"])
    DataSplit.from_config(cfg.datasplit)  # writes the container: 48³ in 32³ chunks
    chunk = container / "train/raw/s0/c/1/1/1"
    if damage == "deleted":
        chunk.unlink()
    elif damage == "truncated":
        _truncate(chunk)
    elif damage == "not json":
        (container / "train/raw/s0/zarr.json").write_text("{")
    else:
        zarr.open_array(str(container / "train/raw/labels/labels/s0"), mode="r+")[...] = 0
    with pytest.raises(ConfigError, match=named) as caught:
        train(cfg)
    assert "\n" not in str(caught.value)
    assert not (Path(cfg.paths.output_dir) / "mlflow.db").exists()


def test_the_new_keys_take_booleans_only(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "v.zarr")
    with pytest.raises(ValueError, match=r"train\[0\]\.raw\.sparse must be true, false or null"):
        DataSplit.from_config(
            volume_config(path, raw={"container": str(path), "dataset": "raw", "sparse": "yes"})
        )
    with pytest.raises(ValueError, match=r"train\[0\]\.allow_empty must be true or false"):
        DataSplit.from_config(volume_config(path, allow_empty="no"))
