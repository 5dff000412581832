"""LightningDataModule: random augmented crops for training, fixed crops for validation.

The loaders know neither networks nor tasks: the network's shapes come as numbers
(:class:`~dacapo_hydra.data.sampler.CropShapes`) and the targets as a callable
(:data:`Targets`), so they can be built and tested on their own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from monai.data import set_track_meta
from monai.transforms import Compose
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate, get_worker_info

from dacapo_hydra.config.trainer import TrainerConfig
from dacapo_hydra.data.augment import build_augment, build_deformation
from dacapo_hydra.data.chunk_cache import ChunkCache
from dacapo_hydra.data.datasplit import DataSplit
from dacapo_hydra.data.deform import single_threaded
from dacapo_hydra.data.sampler import CropSampler, CropShapes
from dacapo_hydra.devices import loader_workers, trainer_cpus

# What a crop's targets are: (gt, mask) -> named arrays, added to the sample by name
# (training's are `target` and `weight`). Picklable, for loader workers started by spawn.
Targets = Callable[[np.ndarray, np.ndarray], Mapping[str, np.ndarray]]


# glibc's mallopt parameters: keep up to this much freed memory at the heap's top, and
# serve blocks up to 32 MiB (glibc's largest mmap threshold) from the heap.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_FREED = 256 * 2**20
HEAP_BLOCKS = 32 * 2**20


@cache
def reuse_freed_memory() -> bool:
    """Have glibc reuse freed memory for the next crop instead of returning it to the OS.

    Each crop allocates and frees the same large arrays (the warp's grid, the
    float32 region, the resampled raw: 9-30 MB at 132³). By default glibc maps
    such blocks afresh and unmaps them when freed, so every crop pays a page fault
    per 4 KiB page it touches: measured 10-15 % of a crop's CPU time. Once per
    loader worker process, never in the training process (a notebook's or a
    cluster job's allocator is not ours to change); a no-op (False) without glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREED) and mallopt(M_MMAP_THRESHOLD, HEAP_BLOCKS))


def _to_numpy(x: Any) -> np.ndarray:
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _squeeze(x: Any) -> np.ndarray:
    """Drop a channel axis of one: targets see (*spatial), or (C, *spatial) for C > 1."""
    array = _to_numpy(x)
    return array[0] if array.shape[0] == 1 else array


def make_sample(crop: dict[str, np.ndarray], targets: Targets) -> dict[str, torch.Tensor]:
    """`raw`, the targets' arrays and `gt` from a (possibly augmented) crop, as tensors.

    gt and mask reach `targets` as (*spatial) arrays; multi-channel ground truth
    (binarize/concat arrays) and per-class masks come as (C, *spatial).

    Example:
        >>> import numpy as np
        >>> ones = np.ones((1, 2, 2))
        >>> crop = {"raw": np.zeros((1, 4, 4)), "gt": ones, "mask": ones}
        >>> sample = make_sample(crop, lambda gt, mask: {"target": (gt > 0)[None] * 1.0})
        >>> {name: tuple(t.shape) for name, t in sample.items()}
        {'raw': (1, 4, 4), 'target': (1, 2, 2), 'gt': (2, 2)}

    """
    gt = _squeeze(crop["gt"])
    mask = _squeeze(crop["mask"])
    sample = {
        "raw": torch.as_tensor(np.ascontiguousarray(_to_numpy(crop["raw"])), dtype=torch.float32)
    }
    for name, array in targets(gt, mask).items():
        sample[name] = torch.from_numpy(np.ascontiguousarray(array))
    sample["gt"] = torch.from_numpy(np.ascontiguousarray(gt.astype(np.int64)))
    return sample


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A batch of samples; one sample becomes a batch of one without a copy.

    PyTorch's `default_collate` stacks, copying every crop even when there is only
    one (a 132³ float32 raw is 9 MB); a leading axis of size one is a view.

    Example:
        >>> batch = collate([{"raw": torch.zeros(1, 4, 4)}])
        >>> tuple(batch["raw"].shape)
        (1, 1, 4, 4)

    """
    if len(samples) == 1 and get_worker_info() is None:
        return {name: tensor[None] for name, tensor in samples[0].items()}
    return default_collate(samples)


class TrainCrops(IterableDataset):
    """An endless stream of augmented crops with targets.

    Each DataLoader worker of each training process (DDP rank) draws from its own
    random stream, so no two draw the same crops and a fixed seed gives a
    reproducible batch sequence: worker w of rank r from `SeedSequence([seed, w, r])`,
    rank 0's workers from `[seed, w]` (as a one-process run's).

    Args:
        sampler: draws and reads crops.
        targets: makes a crop's targets (:data:`Targets`).
        augment: the MONAI augmentations.
        seed: base seed of the streams.
        rank: the training process's global rank (set by the data module's loader).

    """

    def __init__(
        self, sampler: CropSampler, targets: Targets, augment: Compose, seed: int, rank: int = 0
    ) -> None:
        super().__init__()
        self.sampler = sampler
        self.targets = targets
        self.augment = augment
        self.seed = seed
        self.rank = rank

    def entropy(self, worker: int) -> list[int]:
        """The seed sequence's entropy of one loader worker of this rank."""
        return [self.seed, worker] if self.rank == 0 else [self.seed, worker, self.rank]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        set_track_meta(False)
        info = get_worker_info()
        if info is not None:  # a loader process of ours: its allocator is ours to tune
            reuse_freed_memory()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng(self.entropy(worker))
        self.augment.set_random_state(seed=int(rng.integers(2**31)))
        while True:
            with single_threaded():
                sample = make_sample(self.augment(self.sampler.sample(rng)), self.targets)
            yield sample


class ValidationCrops(Dataset):
    """A fixed set of crops per validation dataset, drawn once from `seed`, not augmented."""

    def __init__(self, sampler: CropSampler, targets: Targets, per_dataset: int, seed: int) -> None:
        super().__init__()
        self.sampler = sampler
        self.targets = targets
        rng = np.random.default_rng(seed)
        self.items = [
            (d, sampler.random_roi(d, rng)) for d in sampler.datasets for _ in range(per_dataset)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        dataset, roi = self.items[index]
        return make_sample(self.sampler.read(dataset, roi), self.targets)


class VolumeDataModule(pl.LightningDataModule):
    """Training and validation loaders over a datasplit.

    Args:
        split: the opened datasplit.
        train_sampler: crop sampler over the training datasets.
        val_sampler: crop sampler over the validation datasets, or None.
        targets: makes a crop's targets (:data:`Targets`).
        augment: MONAI pipeline for training crops.
        batch_size: crops per batch.
        num_workers: DataLoader worker processes per training process, or `auto`
            (:func:`~dacapo_hydra.devices.loader_workers`, resolved when the loader is made).
        validation_samples: fixed crops per validation dataset.
        seed: base seed of every random stream.

    """

    def __init__(
        self,
        split: DataSplit,
        train_sampler: CropSampler,
        val_sampler: CropSampler | None,
        targets: Targets,
        augment: Compose,
        batch_size: int,
        num_workers: int | str,
        validation_samples: int,
        seed: int,
        prefetch_factor: int = 2,
    ) -> None:
        super().__init__()
        self.split = split
        self.train_data = TrainCrops(train_sampler, targets, augment, seed)
        self.val_data = (
            ValidationCrops(val_sampler, targets, validation_samples, seed + 1)
            if val_sampler is not None and validation_samples > 0
            else None
        )
        self.batch_size = batch_size
        loader_workers(num_workers, 1)  # checked now: a bad value fails before a run exists
        if prefetch_factor < 1:
            raise ValueError(f"trainer.prefetch_factor={prefetch_factor}: expected at least 1")
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor

    @classmethod
    def build(
        cls,
        split: DataSplit,
        shapes: CropShapes,
        targets: Targets,
        trainer: Any,
        seed: int,
        validation_samples: int,
    ) -> VolumeDataModule:
        """Samplers, augmentations and loaders for a network's shapes.

        Args:
            split: the opened datasplit.
            shapes: the network's input and output shapes, in voxels.
            targets: makes a crop's targets (:data:`Targets`).
            trainer: the trainer config (batch_size, num_workers, augment, prefetch_factor,
                chunk_cache_mb).
            seed: base seed of every random stream.
            validation_samples: fixed crops per validation dataset.

        """
        deformation = build_deformation(
            trainer.augment, split.dims, split.voxel_size, shapes.input_shape
        )
        cache_mb = trainer.get("chunk_cache_mb", TrainerConfig.chunk_cache_mb)
        if not isinstance(cache_mb, (int, float)) or cache_mb < 0:
            raise ValueError(
                f"trainer.chunk_cache_mb={cache_mb!r}: expected the MiB of decoded chunks "
                "each loader process keeps (0: none)"
            )
        chunk_cache = ChunkCache(int(cache_mb * 2**20)) if cache_mb > 0 else None
        train_sampler = CropSampler(split.train, split, shapes, deformation, chunk_cache)
        val_sampler = CropSampler(split.validate, split, shapes) if split.validate else None
        augment = build_augment(
            trainer.augment,
            split.dims,
            shapes.input_shape,
            shapes.output_shape,
            split.voxel_size,
            shapes.out_voxel_size,
        )
        return cls(
            split,
            train_sampler,
            val_sampler,
            targets,
            augment,
            batch_size=trainer.batch_size,
            num_workers=trainer.num_workers,
            validation_samples=validation_samples,
            seed=seed,
            prefetch_factor=trainer.get("prefetch_factor", 2),
        )

    def loader_workers(self, trainer: pl.Trainer | None = None) -> int:
        """The training loader's worker processes (`auto` resolved for this process's CPUs).

        Args:
            trainer: the Trainer the loader is for (default: the one attached, if any).

        """
        return loader_workers(self.num_workers, trainer_cpus(trainer or self.trainer))

    def train_dataloader(self) -> DataLoader:
        """Endless augmented training crops, this rank's own stream.

        Workers stay alive between validations, batches are prepared
        `prefetch_factor` ahead per worker, and memory is pinned when training on CUDA.
        """
        trainer = self.trainer
        self.train_data.rank = trainer.global_rank if trainer is not None else 0
        workers = self.loader_workers()
        on_cuda = (
            trainer.strategy.root_device.type == "cuda"
            if trainer is not None
            else torch.cuda.is_available()
        )
        return DataLoader(
            self.train_data,
            batch_size=self.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=on_cuda,
            prefetch_factor=self.prefetch_factor if workers > 0 else None,
            collate_fn=collate,
        )

    def val_dataloader(self) -> DataLoader | list:
        """The fixed validation crops (none if the datasplit has no validation data)."""
        if self.val_data is None:
            return []
        return DataLoader(self.val_data, batch_size=self.batch_size, num_workers=0)
