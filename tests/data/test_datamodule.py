"""The data module from a composed config: loaders, super-resolution shapes, workers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from dacapo_hydra.architectures.cnnectome_unet import CNNectomeUNet
from dacapo_hydra.data.datamodule import VolumeDataModule
from dacapo_hydra.data.datasplit import DataSplit
from dacapo_hydra.data.tools.synthetic import ensure_synthetic
from dacapo_hydra.tasks.distance import DistanceTask


def test_super_resolution_batches_match_the_network(
    compose_tiny: Callable[..., DictConfig], cache_dir: Path
) -> None:
    path = ensure_synthetic(cache_dir / "superres_2d.zarr", dims=2, shape=[128, 128])
    entry = {
        "name": "sr",
        "raw": {"container": str(path), "dataset": "train/raw"},
        "gt": {"container": str(path), "dataset": "train/labels"},
        "mask": {"container": str(path), "dataset": "train/mask"},
    }
    split = DataSplit.from_config(
        {"dims": 2, "train": [entry], "input_voxel_size": [16, 16], "output_voxel_size": [8, 8]}
    )
    net = CNNectomeUNet(
        input_shape=28, dims=2, num_fmaps=4, downsample_factors=[2], upsample_factors=[2]
    )
    assert net.upsample_factor == (2, 2)
    task = DistanceTask(2, split.gt_voxel_size)
    cfg = compose_tiny("synthetic_2d", trainer="default")
    module = VolumeDataModule.build(split, net, task, cfg.trainer, seed=0, validation_samples=0)
    batch = next(iter(module.train_dataloader()))
    assert batch["raw"].shape[-2:] == (28, 28)
    out = net(batch["raw"])
    assert out.shape[-2:] == batch["target"].shape[-2:] == batch["gt"].shape[-2:]
    # 28 raw voxels of 16 nm hold the finer output crop with the network's context.
    assert out.shape[-1] * 8 < 28 * 16


def test_two_workers_draw_different_reproducible_streams(
    compose_tiny: Callable[..., DictConfig],
) -> None:
    from dacapo_hydra.training.run import build

    cfg = compose_tiny("synthetic_2d", trainer="fast", overrides=["trainer.num_workers=2"])

    def batches() -> list[np.ndarray]:
        loader = iter(build(cfg).datamodule.train_dataloader())
        return [next(loader)["raw"].numpy() for _ in range(4)]

    a, b = batches(), batches()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    # Workers alternate batches; each has its own stream, so neighbours differ.
    assert not np.array_equal(a[0], a[1])
