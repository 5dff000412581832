"""ModelSpec: a checkpoint's stored facts, read in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from dacapo_hydra.data.normalize import Normalizer
from dacapo_hydra.model.load import load
from dacapo_hydra.model.spec import DEFAULT_PAD_MODE, ModelSpec


def stored(checkpoint: str | Path) -> dict[str, Any]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]


def test_spec_of_a_trained_checkpoint(trained_2d: str) -> None:
    hparams = stored(trained_2d)
    meta, config = hparams["meta"], hparams["config"]
    spec = ModelSpec.from_hparams(hparams)
    assert (spec.dims, spec.in_channels) == (2, 1)
    assert spec.voxel_size == tuple(float(v) for v in meta["voxel_size"])
    assert spec.gt_voxel_size == tuple(float(v) for v in meta["gt_voxel_size"])
    assert spec.object_radius == pytest.approx(meta["object_radius"])
    assert spec.normalizer == Normalizer.from_dict(meta["normalize"])
    assert spec.pad_mode == config["datasplit"].get("pad_mode", DEFAULT_PAD_MODE)
    assert spec.hparams == {"config": config, "meta": meta}
    assert spec.target["task"] == config["task"]["_target_"]
    assert spec.out_channels is None  # known once the task is built:
    model = load(trained_2d)
    assert model.spec.out_channels == model.task.num_channels == 1
    assert model.spec == spec.with_out_channels(1)


def test_pad_mode_and_name_come_from_the_config(trained_2d: str) -> None:
    hparams = stored(trained_2d)
    hparams["config"]["datasplit"]["pad_mode"] = "edge"
    hparams["config"]["run_name"] = "my-run"
    spec = ModelSpec.from_hparams(hparams)
    assert (spec.pad_mode, spec.name) == ("edge", "my-run")


def test_a_dict_without_config_or_meta_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^x\.ckpt is not a dacapo-hydra checkpoint"):
        ModelSpec.from_hparams({"config": {}}, "x.ckpt")


def test_a_missing_fact_is_named(trained_2d: str) -> None:
    hparams = stored(trained_2d)
    del hparams["meta"]["in_channels"]
    with pytest.raises(ValueError, match=r"^x\.ckpt: meta\.in_channels is missing"):
        ModelSpec.from_hparams(hparams, "x.ckpt")
