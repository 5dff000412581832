"""The one raw normaliser: modes, the bounded sample, the uint16 default, errors."""

from __future__ import annotations

import logging
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from omegaconf import OmegaConf

from dacapo_hydra.config.datasplit import DataSplitConfig
from dacapo_hydra.data.datasplit import DataSplit
from dacapo_hydra.data.intensity_sample import sample_raw
from dacapo_hydra.data.normalize import Normalizer
from dacapo_hydra.data.transforms import NormalizeArray
from tests.data.helpers import memory_array

KEY = "datasplit.normalize"


def _fit(node: dict[str, Any] | None, data: np.ndarray) -> Normalizer:
    return Normalizer.from_config(node, {"datasplit.train[0] (d)": data})


@pytest.mark.parametrize(
    ("node", "data", "mode", "lo", "hi"),
    [
        ({"mode": "minmax"}, [[3, 7], [1, 9]], "minmax", 1.0, 9.0),
        ({"mode": "minmax", "min": 0}, [[3, 7], [1, 9]], "minmax", 0.0, 9.0),
        ({"mode": "minmax", "max": 20}, [[3, 7], [1, 9]], "minmax", 1.0, 20.0),
        ({"mode": "minmax", "min": -1, "max": 10}, [[3, 7], [1, 9]], "minmax", -1.0, 10.0),
        ({"mode": "percentile", "lower": 10, "upper": 90}, np.arange(101), "percentile", 10, 90),
        ({}, np.arange(1001), "percentile", 10.0, 998.0),
        ({"mode": "meanstd"}, [0, 2, 4, 6], "meanstd", 3.0, 3.0 + math.sqrt(5)),
        ({"mode": "meanstd", "mean": 10, "std": 5}, [0, 2, 4, 6], "meanstd", 10.0, 15.0),
        ({"mode": "meanstd", "std": 2}, [0, 2, 4, 6], "meanstd", 3.0, 5.0),
    ],
)
def test_modes_give_exact_lo_and_hi(
    node: dict[str, Any], data: Any, mode: str, lo: float, hi: float
) -> None:
    norm = _fit(node, np.asarray(data))
    assert (norm.mode, norm.lo, norm.hi) == (mode, lo, hi)
    out = norm(np.array([lo, hi], np.float64))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 1.0], atol=1e-6)


def test_values_round_trip_and_travel() -> None:
    norm = _fit({"lower": 5, "upper": 95}, np.arange(201))
    assert norm == Normalizer("percentile", 10.0, 190.0, 5.0, 95.0, measured=True)
    assert norm.to_dict() == {
        "mode": "percentile",
        "lo": 10.0,
        "hi": 190.0,
        "lower": 5.0,
        "upper": 95.0,
        "measured": True,
    }
    assert Normalizer.from_dict(norm.to_dict()) == norm
    assert pickle.loads(pickle.dumps(norm)) == norm
    meanstd = Normalizer("meanstd", 10.0, 15.0)
    assert meanstd.to_dict()["mean"] == 10.0 and meanstd.to_dict()["std"] == 5.0
    assert (norm.gain, norm.offset) == (1 / 180, -10 / 180)
    raw = np.array([10, 100, 190], np.uint16)
    np.testing.assert_array_equal(norm(raw), ((raw.astype(np.float32) - 10.0) / 180.0))


def test_null_leaves_raw_as_read() -> None:
    norm = Normalizer.from_config(None, {})
    raw = np.array([1.5, 300.0], np.float32)
    assert norm == Normalizer.identity() and norm(raw) is raw
    assert norm(np.array([7], np.uint16)).dtype == np.float32


def test_the_transform_uses_the_same_arithmetic() -> None:
    raw = memory_array(np.array([[0, 51], [102, 255]], np.uint8), (1.0, 1.0))
    z = NormalizeArray(raw, mode="meanstd", mean=102, std=51)
    assert z.normalizer == Normalizer("meanstd", 102.0, 153.0)
    data = raw.read(raw.roi)
    np.testing.assert_array_equal(z.read(z.roi), z.normalizer(data))


def test_the_sample_is_bounded_spread_and_deterministic() -> None:
    data = np.arange(128 * 128, dtype=np.float32).reshape(128, 128)
    array = memory_array(data, (1.0, 1.0), chunk=16)
    sample = sample_raw({"a": array}, max_voxels=1024)
    assert 0 < sample.size <= 1024
    np.testing.assert_array_equal(sample, sample_raw({"a": array}, max_voxels=1024))
    rows, cols = np.divmod(sample.astype(int), 128)
    # Blocks from many chunks, over the whole volume, not one corner.
    chunks = set(zip((rows // 16).tolist(), (cols // 16).tolist(), strict=True))
    assert len(chunks) >= 8
    assert rows.min() < 32 and rows.max() >= 96 and cols.min() < 32 and cols.max() >= 96
    # An array that fits the budget is read whole: the percentiles are exact.
    small = memory_array(data[:16, :16], (1.0, 1.0))
    assert np.array_equal(np.sort(sample_raw({"s": small})), np.sort(data[:16, :16].ravel()))


def _uint16_volume(path: Path, data: np.ndarray) -> Path:
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    arrays = {"raw": data, "gt": np.ones(data.shape, np.uint64)}
    for name, values in arrays.items():
        array = root.create_array(name, shape=values.shape, chunks=(16, 16), dtype=values.dtype)
        array[...] = values
        array.attrs.update({"voxel_size": [4.0, 4.0], "offset": [0.0, 0.0]})
    return path


def _light_microscopy(shape: tuple[int, int] = (96, 96)) -> np.ndarray:
    """uint16 'fluorescence': background ~100-300, cells up to ~4000."""
    rng = np.random.default_rng(0)
    yy, xx = np.indices(shape)
    cells = np.exp(-(((yy % 32) - 16) ** 2 + ((xx % 32) - 16) ** 2) / 60.0)
    data = 200 + 3700 * cells + rng.normal(0, 40, shape)
    return np.clip(data, 100, 4000).astype(np.uint16)


def _split_cfg(path: Path, normalize: Any = "default") -> Any:
    entry = {
        "name": "lm",
        "raw": {"container": str(path), "dataset": "raw"},
        "gt": {"container": str(path), "dataset": "gt"},
    }
    cfg: dict[str, Any] = {"dims": 2, "train": [entry]}
    if normalize != "default":
        cfg["normalize"] = normalize
    # As Hydra composes it: the group's schema and its defaults.
    return OmegaConf.merge(OmegaConf.structured(DataSplitConfig), cfg)


def test_uint16_light_microscopy_maps_to_unit_range_by_default(tmp_path: Path) -> None:
    data = _light_microscopy()
    split = DataSplit.from_config(_split_cfg(_uint16_volume(tmp_path / "lm.zarr", data)))
    norm = split.normalize
    assert (norm.mode, norm.lower, norm.upper) == ("percentile", 1.0, 99.8)
    assert 100 <= norm.lo < 300 and 3000 < norm.hi <= 4000
    out = norm(data)
    inside = np.mean((out >= 0) & (out <= 1))
    assert inside > 0.98
    assert out.min() > -0.1 and out.max() < 1.1


def test_minmax_255_on_uint16_is_refused_naming_max(tmp_path: Path) -> None:
    path = _uint16_volume(tmp_path / "lm.zarr", _light_microscopy())
    with pytest.raises(ValueError, match=r"^datasplit\.normalize\.max \(255\) is far below") as err:
        DataSplit.from_config(_split_cfg(path, {"mode": "minmax", "min": 0, "max": 255}))
    message = str(err.value)
    assert "\n" not in message and "percentile range is [" in message
    assert "datasplit.train[0] (lm)" in message


def test_uint8_em_with_0_255_passes_quietly(caplog: pytest.LogCaptureFixture) -> None:
    data = np.random.default_rng(0).integers(0, 256, (64, 64)).astype(np.uint8)
    with caplog.at_level(logging.WARNING):
        norm = _fit({"mode": "minmax", "min": 0, "max": 255}, data)
    assert (norm.lo, norm.hi, norm.measured) == (0.0, 255.0, False)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_range_somewhat_too_low_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    data = np.concatenate([np.linspace(0, 100, 970), np.full(30, 500.0)])  # 3% far above
    with caplog.at_level(logging.WARNING):
        _fit({"mode": "minmax", "min": 0, "max": 100}, data)
    assert any("3.0% of the sampled training raw" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"mode": "zscore"}, r"datasplit\.normalize\.mode must be one of .*got 'zscore'"),
        ({"mode": "minmax", "min": 5, "max": 5}, r"normalize\.max \(5\.0\) must exceed .*\.min"),
        ({"lower": -1}, r"datasplit\.normalize\.lower must lie in \[0, 100\], got -1"),
        ({"upper": 100.5}, r"datasplit\.normalize\.upper must lie in \[0, 100\], got 100\.5"),
        ({"lower": 50, "upper": 10}, r"normalize\.lower \(50\.0\) must be below .*\.upper"),
        ({"mode": "meanstd", "std": 0}, r"datasplit\.normalize\.std must be positive, got 0"),
        ({"min": 0}, r"normalize\.min is not an option of mode 'percentile'.*mode: minmax"),
        ({"mode": "minmax", "bins": 3}, r"datasplit\.normalize\.bins is not an option"),
        ({"mode": "minmax", "max": "lots"}, r"datasplit\.normalize\.max must be a number"),
        ({"mode": "minmax", "min": 1000}, r"normalize\.min \(1000\.0\) is not below .*max \(9"),
        ({"sample_voxels": 0}, r"datasplit\.normalize\.sample_voxels must be at least 1"),
    ],
)
def test_bad_values_get_one_line_naming_the_key(node: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        _fit(node, np.arange(10))
    assert "\n" not in str(err.value) and str(err.value).startswith(KEY)


@pytest.mark.parametrize("mode", ["percentile", "minmax", "meanstd"])
def test_constant_training_raw_names_the_dataset(mode: str) -> None:
    message = r"empty range \(lo = hi = 7\) on the training raw sampled from datasplit\.train\[0\]"
    with pytest.raises(ValueError, match=message):
        _fit({"mode": mode}, np.full((8, 8), 7, np.uint8))


def test_a_bad_value_in_a_composed_run_is_a_config_error(compose_tiny: Any) -> None:
    from dacapo_hydra.errors import ConfigError
    from dacapo_hydra.training.build import build

    cfg = compose_tiny(datasplit="synthetic_2d", overrides=["datasplit.normalize.mode=zscore"])
    with pytest.raises(ConfigError, match=r"^datasplit\.normalize\.mode must be one of"):
        build(cfg)
