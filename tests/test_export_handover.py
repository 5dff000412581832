"""A model in memory goes to Dask workers as a checkpoint, or is refused before any starts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from dacapo_hydra import Execution, load_model, predict
from dacapo_hydra.data.tools.synthetic import write_synthetic
from dacapo_hydra.export.handover import for_workers, origin
from dacapo_hydra.inference.options import PredictOptions

TWO_WORKERS = Execution(workers=2, progress=False)
REMOTE = Execution(scheduler="tcp://127.0.0.1:9", progress=False)  # nothing listens there


def nudged(model: torch.nn.Module) -> torch.nn.Module:
    """The model with one weight changed in place, as fine-tuning in a notebook would."""
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    return model


def test_a_loaded_model_hands_over_its_own_checkpoint(trained_2d: str) -> None:
    model = load_model(trained_2d)
    with for_workers(model, TWO_WORKERS, None) as (handed, options):
        assert handed == Path(trained_2d).resolve()
        assert options is not None and not options.trust_checkpoint
    # In this process the module itself is used: nothing is loaded again.
    with for_workers(model, Execution(progress=False), None) as (handed, _):
        assert handed is model
    with for_workers(trained_2d, TWO_WORKERS, None) as (handed, _):
        assert handed == trained_2d


def test_a_changed_model_goes_as_a_temporary_checkpoint(trained_2d: str) -> None:
    model = nudged(load_model(trained_2d))
    assert origin(model) is None  # its file no longer holds its weights
    options = PredictOptions(dtype="float16")
    with for_workers(model, TWO_WORKERS, options) as (handed, handed_options):
        assert isinstance(handed, Path) and handed != Path(trained_2d).resolve()
        assert handed_options is not None and handed_options.dtype == "float16"
        reloaded = load_model(handed, trust_checkpoint=handed_options.trust_checkpoint)
        live, loaded = model.state_dict(), reloaded.state_dict()
        assert live.keys() == loaded.keys()
        assert all(torch.equal(live[k], loaded[k]) for k in live)
    assert not handed.exists()  # removed when the call ends


def test_a_changed_model_for_a_remote_scheduler_is_refused_at_once(
    trained_2d: str, tmp_path: Path
) -> None:
    volume = write_synthetic(tmp_path / "v.zarr", dims=2, shape=[32, 32], voxel_size=[4, 4])
    model = nudged(load_model(trained_2d))
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"^a model in memory cannot go to the workers of tcp://"):
        predict(model, volume, "validate/raw", tmp_path / "out.zarr", execution=REMOTE)
    assert time.monotonic() - start < 5  # no connection was tried
    assert not (tmp_path / "out.zarr").exists()
