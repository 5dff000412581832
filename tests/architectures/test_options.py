"""Every option of conf/architecture composes and builds for the dims it is meant for."""

from __future__ import annotations

import hydra
import pytest
import torch

from dacapo_hydra.api import compose, config_dir

OPTIONS = sorted(p.stem for p in (config_dir() / "architecture").glob("*.yaml"))


def test_options_listed():
    assert {"unet_tiny", "unet_small", "cnnectome_unet", "monai_basic_unet", "module"} <= set(
        OPTIONS
    )


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("dims", [2, 3])
def test_option_builds(option, dims):
    cfg = compose(datasplit=f"synthetic_{dims}d", architecture=option)
    net = hydra.utils.instantiate(cfg.architecture, dims=dims, in_channels=1)
    assert net.dims == dims and net.in_channels == 1 and net.out_channels >= 1
    out = net.output_shape(net.input_shape)
    assert len(out) == dims and net.is_valid_input_shape(net.eval_input_shape)
    if dims == 2:
        with torch.no_grad():
            y = net.eval()(torch.zeros(1, 1, *net.input_shape))
        assert tuple(y.shape) == (1, net.out_channels, *out)


def test_bad_shape_fails_at_build_with_nearest(compose_tiny):
    from dacapo_hydra.errors import ConfigError
    from dacapo_hydra.training.build import build

    cfg = compose_tiny(overrides=["architecture.input_shape=45"])
    with pytest.raises(ConfigError, match=r"input_shape=\[45, 45, 45\].*\[46, 46, 46\] \(up\)"):
        build(cfg)
