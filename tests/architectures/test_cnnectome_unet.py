"""CNNectome U-Net: shape arithmetic checked against real forward passes."""

from __future__ import annotations

import pytest
import torch

from dacapo_hydra.architectures.cnnectome_unet import CNNectomeUNet

# (input shape, constructor arguments, expected output shape): small networks, real passes.
TABLE = [
    ((44, 44), {"dims": 2, "downsample_factors": [2]}, (28, 28)),
    ((68, 68), {"dims": 2, "downsample_factors": [2, 2]}, (28, 28)),
    ((46, 46), {"dims": 2, "downsample_factors": [2], "upsample": "constant"}, (30, 30)),
    ((32, 32), {"dims": 2, "downsample_factors": [2, 2], "padding": "same"}, (32, 32)),
    ((44, 44), {"dims": 2, "downsample_factors": [2], "attention": True}, (28, 28)),
    ((44, 44), {"dims": 2, "downsample_factors": [2], "batch_norm": True}, (28, 28)),
    ((52, 52), {"dims": 2, "downsample_factors": [3]}, (30, 30)),
    (
        (40, 40),
        {
            "dims": 2,
            "downsample_factors": [2],
            "kernel_size_down": [[5], [3, 3]],
            "kernel_size_up": [[5, 3]],
        },
        (22, 22),
    ),
    ((44, 44), {"dims": 2, "downsample_factors": [2], "upsample_factors": [2]}, (52, 52)),
    ((44, 44), {"dims": 2, "downsample_factors": [2], "upsample_factors": [[1, 2]]}, (24, 52)),
    ((20, 20, 20), {"dims": 3, "downsample_factors": [2]}, (4, 4, 4)),
    (
        (12, 28, 28),
        {
            "dims": 3,
            "downsample_factors": [[1, 2, 2]],
            "kernel_size_down": [[[1, 3, 3], [1, 3, 3]], [3, 3]],
            "kernel_size_up": [[[1, 3, 3], [1, 3, 3]]],
        },
        (8, 12, 12),
    ),
    ((16, 16, 16), {"dims": 3, "downsample_factors": [2], "padding": "same"}, (16, 16, 16)),
]


@pytest.mark.parametrize(("shape", "kwargs", "expected"), TABLE)
def test_output_shape_matches_forward(shape, kwargs, expected):
    net = CNNectomeUNet(shape, num_fmaps=4, fmap_inc_factor=2, **kwargs).eval()
    assert net.output_shape(shape) == expected
    with torch.no_grad():
        out = net(torch.zeros(2, 1, *shape))
    assert tuple(out.shape) == (2, net.out_channels, *expected)
    # The output sits on the input's grid: context (input voxels) is whole.
    assert all(float(c).is_integer() for c in net.context)


def test_two_channels_in_and_fmaps_out():
    net = CNNectomeUNet(44, dims=2, in_channels=2, num_fmaps=4, fmaps_out=3, fmaps_in=2)
    assert net(torch.zeros(1, 2, 44, 44)).shape == (1, 3, 28, 28)
    with pytest.raises(ValueError, match="fmaps_in=1 but the datasplit's raw has 2"):
        CNNectomeUNet(44, dims=2, in_channels=2, fmaps_in=1)


def test_invalid_shape_names_nearest_valid_shapes():
    with pytest.raises(ValueError) as err:
        CNNectomeUNet(45, dims=2, num_fmaps=4, downsample_factors=[2])
    message = str(err.value)
    assert "architecture.input_shape=[45, 45]" in message
    assert "[46, 46] (up)" in message and "[44, 44] (down)" in message
    with pytest.raises(ValueError, match=r"eval_input_shape=\[83, 83\].*\[84, 84\] \(up\)"):
        CNNectomeUNet(44, dims=2, num_fmaps=4, eval_input_shape=83)


def test_suggested_shapes_really_run():
    net = CNNectomeUNet(72, dims=2, num_fmaps=2, fmap_inc_factor=2, downsample_factors=[2, 3])
    for near in ((70, 81), (100, 90)):
        for direction in ("up", "down"):
            shape = net.valid_input_shape(near, direction)
            assert (shape >= near) if direction == "up" else (shape <= near)
            out = net(torch.zeros(1, 1, *shape))
            assert tuple(out.shape[2:]) == net.output_shape(shape)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"upsample": "bilinear"}, "architecture.upsample must be one of"),
        ({"padding": "full"}, "architecture.padding must be one of"),
        ({"kernel_size_down": [[3, 3]]}, "kernel_size_down must list 2 levels"),
        ({"kernel_size_up": [[4]]}, r"kernel_size_up\[0\]\[0\] must be odd"),
        (
            {"downsample_factors": [[2, 2, 2]]},
            "downsample_factors.0. must be an int or a list of 2",
        ),
    ],
)
def test_bad_parameters_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CNNectomeUNet(44, dims=2, **kwargs)


def test_super_resolution_doubles_resolution():
    plain = CNNectomeUNet(44, dims=2, num_fmaps=4, downsample_factors=[2])
    sr = CNNectomeUNet(44, dims=2, num_fmaps=4, downsample_factors=[2], upsample_factors=[2])
    assert plain.upsample_factor == (1, 1) and sr.upsample_factor == (2, 2)
    # Twice the voxels along each axis over (almost) the same extent: the two extra
    # convolutions cost 2 output voxels = 1 input voxel on each side.
    assert sr.output_shape((44, 44)) == (2 * 28 - 4, 2 * 28 - 4)
    assert sr.context == (plain.context[0] + 1, plain.context[1] + 1)
    with torch.no_grad():
        assert sr(torch.zeros(1, 1, 44, 44)).shape[2:] == (52, 52)


def test_valid_unet_is_translation_equivariant():
    torch.manual_seed(0)
    net = CNNectomeUNet(44, dims=2, num_fmaps=4, downsample_factors=[2]).eval()
    raw = torch.rand(1, 1, 48, 48)
    with torch.no_grad():
        a = net(raw[..., :46, :46])
        b = net(raw[..., 2:48, 2:48])
    # Shifted by 2 voxels (the total downsampling factor): outputs agree where they overlap.
    torch.testing.assert_close(a[..., 2:, 2:], b[..., :-2, :-2])


def test_trainable_regex_freezes_the_rest():
    net = CNNectomeUNet(44, dims=2, num_fmaps=4, batch_norm=True, trainable=r"^right\.")
    frozen = [n for n, p in net.named_parameters() if not p.requires_grad]
    assert frozen and all(not n.startswith("right.") for n in frozen)
    assert all(p.requires_grad for n, p in net.named_parameters() if n.startswith("right."))
    net.train()
    net(torch.rand(2, 1, 44, 44)).mean().backward()
    assert all(p.grad is None for n, p in net.named_parameters() if n in frozen)
    batch_norms = [m for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert any(not m.training for m in batch_norms) and any(m.training for m in batch_norms)
    with pytest.raises(ValueError, match="matches none of the"):
        CNNectomeUNet(44, dims=2, trainable="^nothing")
