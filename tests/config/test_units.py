import pytest
from hypothesis import given
from hypothesis import strategies as st

from dacapo_hydra.config.units import lengths_to_nm, lengths_to_nm_within, to_nm


@pytest.mark.parametrize(
    ("value", "voxel_size", "nm"),
    [
        (50, (8.0, 8.0, 8.0), 50.0),
        ("50nm", (8.0, 8.0), 50.0),
        ("6vx", (8.0, 8.0), 48.0),
        ("6 voxels", (1000.0, 250.0, 250.0), 1500.0),
        ("0.5um", (250.0, 250.0), 500.0),
        ("1.5µm", (4.0, 4.0), 1500.0),
        ("2px", (4.0,), 8.0),
    ],
)
def test_to_nm(value, voxel_size, nm):
    assert to_nm(value, voxel_size, "k") == pytest.approx(nm)


def test_to_nm_errors_name_the_key():
    with pytest.raises(ValueError, match=r"task.scale_factor: cannot read '5 miles'"):
        to_nm("5 miles", (8.0,), "task.scale_factor")
    with pytest.raises(ValueError, match=r"task.clip_distance: '2nm' is 2 nm, below 1 voxel"):
        to_nm("2nm", (8.0, 8.0), "task.clip_distance", min_voxels=1)
    with pytest.raises(ValueError, match=r"spacing: '100vx' is 800 nm, more than the crop's 320"):
        to_nm("100vx", (8.0,), "spacing", max_nm=320)


def test_per_axis_lengths_use_their_axis():
    assert lengths_to_nm(["1vx", "2vx"], (40.0, 8.0), "k") == [40.0, 16.0]
    with pytest.raises(ValueError, match="k: .* has 1 entries; give one length or 2"):
        lengths_to_nm([1.0], (40.0, 8.0), "k")


@given(st.floats(0.1, 1e4), st.floats(0.5, 500))
def test_voxels_scale_with_voxel_size(n, size):
    assert to_nm(f"{n}vx", (size * 3, size), "k") == pytest.approx(n * size)


def test_lengths_within_a_crop():
    # One length fits the longest axis (z holds only 400 nm, y 800 nm).
    assert lengths_to_nm_within("100vx", (40.0, 8.0), "k", (400.0, 800.0)) == 800.0
    with pytest.raises(ValueError, match=r"k: '101vx' is 808 nm, more than the crop's 800 nm"):
        lengths_to_nm_within("101vx", (40.0, 8.0), "k", (400.0, 800.0))
    # One length per axis fits its own axis, in its own voxels.
    assert lengths_to_nm_within(["10vx", 800], (40.0, 8.0), "k", (400.0, 800.0)) == [400.0, 800.0]
    with pytest.raises(ValueError, match=r"k\[0\]: '11vx' is 440 nm, more than the crop's 400"):
        lengths_to_nm_within(["11vx", "1vx"], (40.0, 8.0), "k", (400.0, 800.0))
    with pytest.raises(ValueError, match=r"k\[1\]: '0.5vx' is 4 nm, below 1 voxel"):
        lengths_to_nm_within([40, "0.5vx"], (40.0, 8.0), "k", (400.0, 800.0), min_voxels=1)
    with pytest.raises(ValueError, match="k: .* has 3 entries; give one length or 2"):
        lengths_to_nm_within([1, 1, 1], (40.0, 8.0), "k", (400.0, 800.0))
