"""predict_roi, now in model/: the same result as one pass over the whole volume."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from omegaconf import DictConfig

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.tools.synthetic import write_synthetic
from dacapo_hydra.model.plan import OVERLAP, WINDOW_BATCH, BlockPlan
from dacapo_hydra.model.predict import predict_roi
from dacapo_hydra.model.trained import TrainedModel
from dacapo_hydra.training.build import build


def scaled(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 255


def tiny_model(compose: Callable[..., DictConfig], **groups: object) -> TrainedModel:
    torch.manual_seed(0)
    return build(compose(datasplit="synthetic_2d", **groups)).module.model.eval()


def volume(model: TrainedModel, folder: Path) -> ZarrArray:
    vs = list(model.spec.voxel_size)
    return ZarrArray.open(
        write_synthetic(folder / "v.zarr", 2, [70, 60], vs, [0, 0]), "validate/raw"
    )


def test_a_network_with_context_equals_one_forward_pass(compose_tiny, tmp_path: Path) -> None:
    model = tiny_model(compose_tiny)
    raw = volume(model, tmp_path)
    plan = BlockPlan.for_model(model, raw.voxel_size, (44, 44))
    assert not plan.blend and plan.write_shape == (28, 28)
    blockwise = predict_roi(model, raw, raw.roi, scaled, "reflect", input_shape=(44, 44))
    context = [c * v for c, v in zip(model.architecture.context, raw.voxel_size, strict=True)]
    data = scaled(raw.read_padded(raw.roi.grow(context), "reflect"))
    with torch.inference_mode():
        whole = model(torch.from_numpy(data)[None, None])[0].numpy()
    assert blockwise.shape == whole.shape == (1, 70, 60)
    np.testing.assert_allclose(blockwise, whole, atol=1e-5)


@pytest.mark.slow  # the fast tier checks it through predict: tests/test_predict.py
def test_same_padding_equals_monai_sliding_window(compose_tiny, tmp_path: Path) -> None:
    model = tiny_model(
        compose_tiny,
        architecture="monai_basic_unet",
        overrides=["architecture.network.features=[4,4,4,4,4,4]"],
    )
    raw = volume(model, tmp_path)
    plan = BlockPlan.for_model(model, raw.voxel_size, (32, 32))
    assert (plan.overlap, plan.window_batch) == (OVERLAP, WINDOW_BATCH) == (0.5, 2)
    blockwise = predict_roi(model, raw, raw.roi, scaled, "reflect", input_shape=(32, 32))
    with torch.inference_mode():
        reference = sliding_window_inference(
            torch.from_numpy(scaled(raw.read(raw.roi)))[None, None],
            (32, 32),
            1,
            model,
            overlap=OVERLAP,
            mode="gaussian",
        )[0].numpy()
    np.testing.assert_allclose(blockwise, reference, atol=1e-5)
