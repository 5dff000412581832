"""The data module: loaders from numbers and a targets callable, super-resolution, workers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr
from omegaconf import DictConfig, OmegaConf

from dacapo_hydra.architectures.cnnectome_unet import CNNectomeUNet
from dacapo_hydra.data.datamodule import VolumeDataModule
from dacapo_hydra.data.datasplit import DataSplit
from dacapo_hydra.data.sampler import CropShapes
from dacapo_hydra.data.tools.synthetic import ensure_synthetic
from dacapo_hydra.tasks.distance import DistanceTask
from dacapo_hydra.training.build import TaskTargets, build, crop_shapes
from tests.data.helpers import volume_config, write_volume


def test_loaders_need_only_shapes_and_a_targets_callable(tmp_path: Path) -> None:
    """No network, no task: shapes as numbers, targets from a plain function."""
    path = write_volume(tmp_path / "v.zarr", (32, 32))
    gt = np.arange(1, 32 * 32 + 1, dtype=np.uint64).reshape(32, 32)  # each voxel its own id
    zarr.open_group(str(path))["gt"][...] = gt
    raw = zarr.open_group(str(path))["raw"][...]
    split = DataSplit.from_config(volume_config(path, validate=True, dims=2))
    shapes = CropShapes(input_shape=(12, 12), output_shape=(8, 8), voxel_size=(8.0, 8.0))
    off = {"mirror_prob": 0, "transpose_prob": 0, "intensity_prob": 0}
    trainer = OmegaConf.create(
        {"batch_size": 3, "num_workers": 0, "augment": {**off, "intensity_scale": 0}}
    )

    def targets(gt: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        return {"double": 2 * gt[None].astype(np.float32), "known": mask[None].astype(np.float32)}

    module = VolumeDataModule.build(split, shapes, targets, trainer, seed=0, validation_samples=2)
    batch = next(iter(module.train_dataloader()))
    assert sorted(batch) == ["double", "gt", "known", "raw"]
    assert batch["raw"].shape == (3, 1, 12, 12) and batch["gt"].shape == (3, 8, 8)
    assert batch["double"].shape == batch["known"].shape == (3, 1, 8, 8)
    padded = np.pad(raw, 2, mode=split.pad_mode)  # 2 voxels of context a side
    for sample in range(3):
        crop = batch["gt"][sample].numpy()
        y, x = divmod(int(crop[0, 0]) - 1, 32)  # where the output crop lies
        np.testing.assert_array_equal(crop, gt[y : y + 8, x : x + 8])
        np.testing.assert_array_equal(batch["double"][sample, 0].numpy(), 2.0 * crop)
        assert (batch["known"][sample] == 1).all()
        # Raw is read around the same place, with the context, normalised (minmax 0-100).
        np.testing.assert_allclose(
            batch["raw"][sample, 0].numpy(), padded[y : y + 12, x : x + 12] / 100, rtol=1e-6
        )
    validation = module.val_dataloader()
    assert len(validation.dataset) == 2
    assert sorted(next(iter(validation))) == sorted(batch)


def test_super_resolution_batches_match_the_network(
    compose_tiny: Callable[..., DictConfig], cache_dir: Path
) -> None:
    path = ensure_synthetic(cache_dir / "superres_2d.zarr", dims=2, shape=[128, 128])
    entry = {
        "name": "sr",
        "raw": {"container": str(path), "dataset": "train/raw"},
        "gt": {"container": str(path), "dataset": "train/raw/labels/labels"},
        "mask": {"container": str(path), "dataset": "train/raw/labels/mask"},
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
    module = VolumeDataModule.build(
        split,
        crop_shapes(net, split.voxel_size),
        TaskTargets(task),
        cfg.trainer,
        seed=0,
        validation_samples=0,
    )
    batch = next(iter(module.train_dataloader()))
    assert batch["raw"].shape[-2:] == (28, 28)
    out = net(batch["raw"])
    assert out.shape[-2:] == batch["target"].shape[-2:] == batch["gt"].shape[-2:]
    # 28 raw voxels of 16 nm hold the finer output crop with the network's context.
    assert out.shape[-1] * 8 < 28 * 16


def test_two_workers_draw_different_reproducible_streams(
    compose_tiny: Callable[..., DictConfig],
) -> None:
    cfg = compose_tiny("synthetic_2d", trainer="fast", overrides=["trainer.num_workers=2"])

    def batches() -> list[np.ndarray]:
        loader = iter(build(cfg).datamodule.train_dataloader())
        return [next(loader)["raw"].numpy() for _ in range(4)]

    a, b = batches(), batches()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    # Workers alternate batches; each has its own stream, so neighbours differ.
    assert not np.array_equal(a[0], a[1])
