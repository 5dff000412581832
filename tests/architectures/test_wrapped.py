"""Any module, or a saved program, as an architecture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dacapo_hydra.architectures.wrapped import WrappedModule


class _Valid(nn.Module):
    """Two valid 3x3 convolutions, 1 -> 4 channels (output 4 voxels smaller)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3)
        self.b = nn.Conv2d(4, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def test_module_from_target():
    node = {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 6, "kernel_size": 5}
    net = WrappedModule(20, dims=2, module=node)
    assert net.out_channels == 6
    assert net.output_shape((20, 30)) == (16, 26)
    assert net.context == (2, 2)
    assert net(torch.zeros(1, 1, 20, 20)).shape == (1, 6, 16, 16)
    with pytest.raises(ValueError, match="built a dict, not a torch.nn.Module"):
        WrappedModule(20, dims=2, module={"_target_": "builtins.dict"})
    with pytest.raises(ValueError, match="exactly one of"):
        WrappedModule(20, dims=2)


def test_torchscript_file_fine_tuned(tmp_path):
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(_Valid()), str(path))
    net = WrappedModule(24, dims=2, path=str(path), trainable=r"^b\.")
    assert net.output_shape((24, 24)) == (20, 20) and net.out_channels == 4
    net(torch.rand(1, 1, 24, 24)).mean().backward()
    grads = {n: p.grad is not None for n, p in net.named_parameters()}
    assert grads == {
        "network.a.weight": False,
        "network.a.bias": False,
        "network.b.weight": True,
        "network.b.bias": True,
    }


def test_torch_export_file(tmp_path):
    path = tmp_path / "net.pt2"
    module = _Valid().eval()
    torch.export.save(torch.export.export(module, (torch.zeros(1, 1, 24, 24),)), str(path))
    net = WrappedModule(24, dims=2, path=str(path))
    x = torch.rand(1, 1, 24, 24)
    torch.testing.assert_close(net(x), module(x))


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save(_Valid(), path)
    with pytest.raises(ValueError, match="neither a TorchScript archive nor a torch.export"):
        WrappedModule(24, dims=2, path=str(path))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        WrappedModule(24, dims=2, path=str(tmp_path / "missing.pt"))


def test_wrong_channels_are_refused():
    node = {"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 2, "kernel_size": 1}
    with pytest.raises(
        ValueError, match="runs on no input shape near .8, 8.*the network fails on it"
    ):
        WrappedModule(8, dims=2, in_channels=1, module=node)
