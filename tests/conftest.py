"""Shared fixtures: a session cache for synthetic data, tiny volumes, composed configs."""

from __future__ import annotations

import io
import os
import resource
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from dacapo_hydra.api import compose

if TYPE_CHECKING:
    from dacapo_hydra.training.run import TrainResult

REPO = Path(__file__).resolve().parents[1]

# Small synthetic volumes: big enough for one unet_tiny output crop (28 voxels) inside the
# annotated region, small enough to generate in well under a second.
TINY_DATA = {
    "synthetic_3d": ["datasplit.synthetic.shape=[48,48,48]"],
    "synthetic_2d": ["datasplit.synthetic.shape=[96,96]"],
}


class Probe(pl.Callback):
    """A configured callback that records the Trainer it ran in.

    Given as `+callbacks.probe._target_=tests.conftest.Probe`; `Probe.seen` holds the
    Trainer's gradient accumulation and the classes of its callbacks.
    """

    seen: dict[str, object] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the Trainer's settings."""
        Probe.seen = {
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "callbacks": [type(c).__name__ for c in trainer.callbacks],
        }


class Crash(pl.Callback):
    """A configured callback that fails the run once `at` iterations are done."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object, batch_idx: int
    ) -> None:
        """Raise at iteration `at`."""
        if trainer.global_step >= self.at:
            raise RuntimeError(f"crash at iteration {trainer.global_step}")


class FullDisk(pl.Callback):
    """A configured callback: the checkpoint saved at iteration `at` meets a full disk.

    Just before Lightning writes it (`on_save_checkpoint`), the process's file-size
    limit (RLIMIT_FSIZE) drops below the checkpoint's size, so the write stops
    midway with a real `OSError` (EFBIG) after writing part of the bytes, as on a
    full disk. The limit is restored when Lightning reports the failure.
    """

    def __init__(self, at: int) -> None:
        self.at = at
        self.saved: tuple[tuple[int, int], Any] | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Lower the file-size limit to half the checkpoint's size."""
        if trainer.global_step < self.at or self.saved is not None:
            return
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        # Past the limit, write() fails with EFBIG instead of the process getting SIGXFSZ.
        self.saved = (limits, signal.signal(signal.SIGXFSZ, signal.SIG_IGN))
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(buffer.getvalue()) // 2, limits[1]))

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Lift the limit again."""
        self.restore()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Lift the limit again, whatever happened."""
        self.restore()

    def restore(self) -> None:
        """Put back the file-size limit and the SIGXFSZ handler."""
        if self.saved is not None:
            limits, handler = self.saved
            resource.setrlimit(resource.RLIMIT_FSIZE, limits)
            signal.signal(signal.SIGXFSZ, handler)


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test shares one cache of generated synthetic data (DACAPO_CACHE_DIR)."""
    path = tmp_path_factory.mktemp("cache")
    old = os.environ.get("DACAPO_CACHE_DIR")
    os.environ["DACAPO_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("DACAPO_CACHE_DIR", None)
    else:
        os.environ["DACAPO_CACHE_DIR"] = old


def tiny_overrides(datasplit: str = "synthetic_3d", output_dir: Path | None = None) -> list[str]:
    """Overrides for a fast run on tiny synthetic data, writing under `output_dir`."""
    out = [
        *TINY_DATA.get(datasplit, []),
        "iterations=4",
        "validation_interval=2",
        "validation_samples=1",
    ]
    if output_dir is not None:
        out.append(f"paths.output_dir={output_dir}")
    return out


def perturbed(checkpoint: str | Path, out: Path) -> Path:
    """Checkpoint B: checkpoint A with every weight nudged, saved to a new file."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    generator = torch.Generator().manual_seed(1)
    for name, tensor in state["state_dict"].items():
        if tensor.is_floating_point():
            noise = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
            state["state_dict"][name] = tensor + 0.1 * noise
    torch.save(state, out)
    return out


@pytest.fixture
def compose_tiny(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose a config for a tiny run whose outputs go to this test's tmp_path."""

    def _compose(
        datasplit: str = "synthetic_3d",
        architecture: str | None = None,
        task: str | None = None,
        trainer: str | None = None,
        overrides: Sequence[str] = (),
    ) -> DictConfig:
        return compose(
            datasplit=datasplit,
            architecture=architecture,
            task=task,
            trainer=trainer,
            overrides=[*tiny_overrides(datasplit, tmp_path / "outputs"), *overrides],
        )

    return _compose


def _trained(factory: pytest.TempPathFactory, datasplit: str, **groups: str) -> str:
    """The last checkpoint of a unet_tiny run of `datasplit` trained on tiny crops."""
    from dacapo_hydra.training.run import train

    out = factory.mktemp(f"trained_{datasplit}")
    cfg = compose(datasplit=datasplit, overrides=tiny_overrides(datasplit, out), **groups)
    return train(cfg).checkpoint


@pytest.fixture(scope="session")
def run_3d(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> TrainResult:
    """A validated unet_tiny distance run, 4 iterations on tiny 3D data, recorded in MLflow."""
    from dacapo_hydra.training.run import train

    out = tmp_path_factory.mktemp("trained_synthetic_3d")
    cfg = compose(
        datasplit="synthetic_3d", task="distance", overrides=tiny_overrides("synthetic_3d", out)
    )
    return train(cfg)


@pytest.fixture(scope="session")
def trained_3d(run_3d: TrainResult) -> str:
    """The last checkpoint of :func:`run_3d`."""
    return run_3d.checkpoint


@pytest.fixture(scope="session")
def trained_2d(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> str:
    """A unet_tiny distance checkpoint, 4 iterations on tiny 2D data (fast trainer)."""
    return _trained(tmp_path_factory, "synthetic_2d", trainer="fast")


@pytest.fixture(autouse=True)
def _no_leaked_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without `MLFLOW_TRACKING_URI` (a run or an example may set it)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
