"""MONAI networks behind the architecture interface: same padding, shapes by trial."""

from __future__ import annotations

import pytest
import torch

from dacapo_hydra.architectures.monai_net import MonaiNetwork

BASIC = {"_target_": "monai.networks.nets.BasicUNet", "features": [4, 4, 8, 8, 8, 4]}
UNET = {"_target_": "monai.networks.nets.UNet", "channels": [4, 8, 8], "strides": [2, 2]}


def test_basic_unet_same_padding_2d():
    net = MonaiNetwork(BASIC, 32, dims=2, in_channels=2, fmaps_out=5, eval_input_shape=64)
    assert (net.dims, net.in_channels, net.out_channels) == (2, 2, 5)
    assert net.output_shape((48, 32)) == (48, 32)
    assert net.context == (0, 0) and net.upsample_factor == (1, 1)
    out = net(torch.rand(2, 2, 32, 32))
    assert out.shape == (2, 5, 32, 32)


def test_unet_3d_shapes_and_refusal_with_nearest():
    net = MonaiNetwork(UNET, 16, dims=3, fmaps_out=3)
    assert net(torch.rand(1, 1, 16, 16, 16)).shape == (1, 3, 16, 16, 16)
    # Found by trial, not from `divisor`: MONAI's UNet needs multiples of its total stride.
    assert not net.is_valid_input_shape((17, 16, 16))
    assert net.valid_input_shape((17, 16, 13), "up") == (20, 16, 16)
    assert net.valid_input_shape((17, 16, 13), "down") == (16, 16, 12)
    with pytest.raises(
        ValueError, match=r"input_shape=\[18, 18\].*\[20, 20\] \(up\) or \[16, 16\]"
    ):
        MonaiNetwork(UNET, 18, dims=2)


def test_divisor_refuses_up_front():
    with pytest.raises(
        ValueError, match=r"not a multiple of divisor \[16, 16\].*\[48, 48\] \(up\)"
    ):
        MonaiNetwork(BASIC, 40, dims=2, divisor=16)


def test_filled_arguments_and_bad_target_are_named():
    with pytest.raises(ValueError, match="architecture.network.out_channels is set from"):
        MonaiNetwork({**BASIC, "out_channels": 3}, 32, dims=2)
    with pytest.raises(ValueError, match="architecture.network._target_='monai.nope'"):
        MonaiNetwork({"_target_": "monai.nope"}, 32, dims=2)
    with pytest.raises(ValueError, match="must be a mapping with a _target_"):
        MonaiNetwork({"features": [4]}, 32, dims=2)


def test_trainable_names_are_the_networks_own():
    net = MonaiNetwork(BASIC, 32, dims=2, trainable="^final_conv")
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable == ["network.final_conv.weight", "network.final_conv.bias"]
