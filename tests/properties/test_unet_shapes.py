"""Property: the U-Net's shape arithmetic is what a real forward pass does.

For random small CNNectome U-Nets (2D and 3D, one or two downsampling levels,
isotropic or not, valid or same padding, optional super-resolution), the input
shape the architecture suggests near any shape (`valid_input_shape`) is the nearest
valid one, and a forward pass on it gives exactly `output_shape`; an invalid shape is
refused with an error naming the nearest valid shapes.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dacapo_hydra.architectures.cnnectome_unet import CNNectomeUNet

PROPERTY = settings(max_examples=15, deadline=None, database=None)


@st.composite
def unet_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    """Constructor arguments of a tiny U-Net (the input shapes apart)."""
    dims = draw(st.integers(2, 3))
    factor = st.integers(1, 3 if dims == 2 else 2)
    levels = draw(st.integers(1, 2))
    factors = [[draw(factor) for _ in range(dims)] for _ in range(levels)]
    return {
        "dims": dims,
        "num_fmaps": 2,
        "fmap_inc_factor": 2,
        "downsample_factors": factors,
        "kernel_size": draw(st.sampled_from([3, 5] if dims == 2 else [3])),
        "convs_per_level": draw(st.integers(1, 2)),
        "upsample": draw(st.sampled_from(["transposed", "constant"])),
        "padding": draw(st.sampled_from(["valid", "same"])),
        "attention": dims == 2 and draw(st.booleans()),
        "upsample_factors": draw(st.sampled_from([[], [2], [[1, 2] + [1] * (dims - 2)]])),
    }


def build(kwargs: dict[str, Any]) -> CNNectomeUNet:
    """The network, built with the first valid shape found from the bottom level up.

    Some layouts have no valid shape on an axis: e.g. downsampling by 3 and then by 1
    with one 3-wide convolution per level always puts the output half a voxel off the
    input's grid. Those are skipped (`assume`); the constructor refuses every shape.
    """
    dims = kwargs["dims"]
    crop = (
        0
        if kwargs["padding"] == "same"
        else kwargs["convs_per_level"] * (kwargs["kernel_size"] - 1)
    )
    for bottom in range(1, 33):
        sizes = []
        for axis in range(dims):
            size = bottom + crop
            for factors in reversed(kwargs["downsample_factors"]):
                size = size * factors[axis] + crop
            sizes.append(size)
        try:
            return CNNectomeUNet(sizes, **kwargs)
        except ValueError:
            continue
    assume(False)
    raise AssertionError("unreachable")


def forward_shape(net: CNNectomeUNet, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Spatial shape of a real forward pass on zeros of `shape`."""
    with torch.no_grad():
        out = net.eval()(torch.zeros(1, net.in_channels, *shape))
    assert out.shape[:2] == (1, net.out_channels)
    return tuple(out.shape[2:])


@PROPERTY
@given(unet_kwargs(), st.data())
def test_suggested_input_shapes_are_nearest_and_run_to_the_predicted_output(
    kwargs: dict[str, Any], data: st.DataObject
) -> None:
    """valid_input_shape(near, up/down) is the nearest valid shape that way on each axis,
    and forward(input).shape == output_shape(input), with whole output voxels of context
    per side."""
    net = build(kwargs)
    dims = kwargs["dims"]
    near = tuple(data.draw(st.integers(1, 48 if dims == 2 else 20)) for _ in range(dims))
    for direction in ("up", "down"):
        try:
            shape = net.valid_input_shape(near, direction)
        except ValueError:
            # Up always finds one (the configured input is valid); down may find none.
            assert direction == "down"
            continue
        step = 1 if direction == "up" else -1
        for axis in range(dims):
            assert (shape[axis] - near[axis]) * step >= 0
            for size in range(near[axis], shape[axis], step):  # skipped sizes are invalid
                assert not net.is_valid_input_shape(shape[:axis] + (size,) + shape[axis + 1 :])
        expected = net.output_shape(shape)
        assert forward_shape(net, shape) == expected
        if kwargs["padding"] == "same":
            assert expected == tuple(s * u for s, u in zip(shape, net.upsample_factor, strict=True))
        # The output sits on its own voxel grid: whole output voxels of context per side.
        context = zip(net.context_for(shape), net.upsample_factor, strict=True)
        assert all(float(c * u).is_integer() for c, u in context)


@PROPERTY
@given(unet_kwargs(), st.data())
def test_invalid_shapes_are_refused_naming_the_nearest_valid_ones(
    kwargs: dict[str, Any], data: st.DataObject
) -> None:
    """An invalid input (or eval input) shape is refused by the constructor with an error
    naming the nearest valid shape above it, which is valid; a valid eval shape is taken
    and runs to its predicted output."""
    net = build(kwargs)
    dims = kwargs["dims"]
    near = tuple(data.draw(st.integers(1, 48 if dims == 2 else 20)) for _ in range(dims))
    up = net.valid_input_shape(near, "up")
    if near == up:  # valid: usable as the eval shape
        evaluated = CNNectomeUNet(net.input_shape, eval_input_shape=list(near), **kwargs)
        assert forward_shape(evaluated, near) == evaluated.output_shape(near)
        return
    assert net.is_valid_input_shape(up) and not net.is_valid_input_shape(near)
    for name, args in (
        ("input_shape", {"input_shape": list(near)}),
        ("eval_input_shape", {"input_shape": net.input_shape, "eval_input_shape": list(near)}),
    ):
        with pytest.raises(ValueError) as refused:
            CNNectomeUNet(**args, **kwargs)
        message = str(refused.value)
        assert f"architecture.{name}={list(near)} does not fit CNNectomeUNet" in message
        assert f"nearest valid shapes: {list(up)} (up)" in message


def test_nearest_valid_shape_above_a_small_shape_is_found() -> None:
    """The nearest valid shape above a tiny one exists whenever any valid shape does."""
    net = CNNectomeUNet(122, dims=2, num_fmaps=2, downsample_factors=[3, 2], kernel_size=5)
    assert net.valid_input_shape((1, 1), "up") == (122, 122)
