"""A run's measured normalisation travels with its checkpoint to prediction and export."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from omegaconf import DictConfig

from dacapo_hydra.data.normalize import Normalizer
from dacapo_hydra.export.apply_script import normalize as apply_normalize
from dacapo_hydra.export.model import export_model
from dacapo_hydra.inference.predict import plan_prediction
from dacapo_hydra.model.load import load
from dacapo_hydra.model.spec import ModelSpec
from dacapo_hydra.training.build import build
from dacapo_hydra.training.run import train


def _raw(path: Path, data: np.ndarray) -> Path:
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    array = root.create_array("raw", shape=data.shape, chunks=(32, 32), dtype=data.dtype)
    array[...] = data
    array.attrs.update({"voxel_size": [4.0, 4.0], "offset": [0.0, 0.0]})
    return path


@pytest.mark.slow
def test_stored_values_reach_prediction_validation_and_export(
    compose_tiny: Callable[..., DictConfig], tmp_path: Path
) -> None:
    # Percentiles of the synthetic EM raw: a range that is not 0-255.
    overrides = [
        "datasplit.normalize.mode=percentile",
        "datasplit.normalize.min=null",
        "datasplit.normalize.max=null",
        "datasplit.normalize.lower=2",
        "datasplit.normalize.upper=98",
    ]
    cfg = compose_tiny(datasplit="synthetic_2d", trainer="fast", overrides=overrides)
    checkpoint = train(cfg).checkpoint

    stored = torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]
    norm = Normalizer.from_dict(stored["meta"]["normalize"])
    assert (norm.mode, norm.lower, norm.upper, norm.measured) == ("percentile", 2.0, 98.0, True)
    assert norm.lo > 0 and norm.hi < 255
    # The sample is deterministic: training (and its validation) used these numbers.
    assert build(cfg).split.normalize == norm

    assert load(checkpoint).spec.normalizer == norm

    # Prediction on a volume with other statistics still uses the training's values.
    bright = np.random.default_rng(0).integers(1000, 5000, (64, 64)).astype(np.uint16)
    job = plan_prediction(
        checkpoint, _raw(tmp_path / "in.zarr", bright), "raw", tmp_path / "out.zarr", "pred"
    )
    assert job.predictor.normalize == norm

    exported = export_model(checkpoint, tmp_path / "model")
    meta = json.loads((exported.folder / "model.json").read_text())
    assert (meta["normalize"]["lo"], meta["normalize"]["hi"]) == (norm.lo, norm.hi)
    assert Normalizer.from_dict(meta["normalize"]) == norm
    np.testing.assert_array_equal(apply_normalize(bright, meta), norm(bright))


def test_a_checkpoint_without_stored_values_falls_back_to_its_config(
    compose_tiny: Callable[..., DictConfig], tmp_path: Path
) -> None:
    module = build(compose_tiny(datasplit="synthetic_2d")).module
    hparams = dict(module.hparams)
    hparams["meta"] = {k: v for k, v in hparams["meta"].items() if k != "normalize"}
    config = dict(hparams["config"])
    config["datasplit"] = {**config["datasplit"], "normalize": {"min": 10.0, "max": 200.0}}
    hparams["config"] = config
    old = tmp_path / "old.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams}, old)
    loaded = load(old).spec
    assert loaded.normalizer == Normalizer("minmax", 10.0, 200.0)
    assert loaded.meta["normalize"]["lo"] == 10.0

    config["datasplit"] = {**config["datasplit"], "normalize": {"mode": "percentile"}}
    with pytest.raises(ValueError, match=r"stores no normalisation values \(meta\.normalize\)"):
        ModelSpec.from_hparams(hparams)
