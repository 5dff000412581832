"""A run's trained network as an MLflow model, and its datasplit as MLflow dataset inputs.

The model is the network, its task head and the task's activation
(:class:`~dacapo_hydra.architectures.inference.InferenceNetwork`: normalised raw in, prediction
out), with the weights of the run's best checkpoint (`best_<criterion>.ckpt`, or
`last.ckpt` for a run that was never validated). It is saved in MLflow's pickle
format, so `mlflow.pytorch.load_model` returns the live `torch.nn.Module`, which
takes any batch size and any input shape the architecture accepts (loading needs
dacapo-hydra installed; `dacapo-export` writes a torch.export program that does
not). The signature and input example use the architecture's eval input shape;
where that shape has more than :data:`EXAMPLE_MAX_VOXELS` voxels (MLflow stores
examples as indented JSON: 84³ voxels are 13 MB), the example takes the nearest
smaller valid shape and the signature leaves the spatial sizes free. The eval
shapes, voxel sizes and normalisation are in the model's metadata.

Example:
    >>> import mlflow, torch
    >>> network = mlflow.pytorch.load_model(f"runs:/{run_id}/model")  # doctest: +SKIP
    >>> prediction = network(torch.zeros(1, 1, 84, 84, 84))  # doctest: +SKIP

"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODEL_NAME = "model"
EXAMPLE_MAX_VOXELS = 2**16


def example_shape(architecture: Any) -> tuple[int, ...]:
    """The spatial shape of the model's input example: the eval input shape, if small enough.

    Larger eval shapes give the largest valid shape of at most
    :data:`EXAMPLE_MAX_VOXELS` voxels (the eval shape if the architecture has none).
    """
    shape = tuple(int(s) for s in architecture.eval_input_shape)
    if math.prod(shape) <= EXAMPLE_MAX_VOXELS:
        return shape
    side = int(EXAMPLE_MAX_VOXELS ** (1 / len(shape)))
    try:
        smaller = tuple(architecture.valid_input_shape([min(s, side) for s in shape], "down"))
    except ValueError:
        return shape
    return smaller if all(s > 0 for s in smaller) else shape


@contextmanager
def active_run(tracking_uri: str, run_id: str) -> Iterator[None]:
    """Make `run_id` in `tracking_uri` MLflow's active run, restoring MLflow's globals after.

    `mlflow.set_tracking_uri` also sets `$MLFLOW_TRACKING_URI`; both are put back,
    so the next run in this process still finds its own store.
    """
    import mlflow
    from mlflow.tracking._tracking_service import utils

    saved_env = os.environ.get("MLFLOW_TRACKING_URI")
    saved_uri = utils._tracking_uri  # what mlflow's own _use_tracking_uri saves
    mlflow.set_tracking_uri(tracking_uri)
    try:
        nested = mlflow.active_run() is not None
        with mlflow.start_run(run_id=run_id, nested=nested, log_system_metrics=False):
            yield
    finally:
        mlflow.set_tracking_uri(saved_uri)
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


def model_checkpoint(checkpoint_dir: Path, criterion: str) -> Path:
    """The checkpoint a run's model is made from: `best_<criterion>.ckpt`, else `last.ckpt`."""
    best = Path(checkpoint_dir) / f"best_{criterion}.ckpt"
    return best if best.is_file() else Path(checkpoint_dir) / "last.ckpt"


def log_network(
    tracking_uri: str,
    run_id: str,
    module: Any,
    checkpoint: str | Path,
    registered_model_name: str | None = None,
) -> str:
    """Log the network of `module`, loaded from `checkpoint`, as the MLflow model `model`.

    Args:
        tracking_uri: the MLflow store.
        run_id: the run the model belongs to.
        module: the trained model (a :class:`~dacapo_hydra.model.trained.TrainedModel`
            from :func:`~dacapo_hydra.model.load.load`, or a
            :class:`~dacapo_hydra.training.module.RunModule`): its architecture, head,
            task and spec.
        checkpoint: the checkpoint it was loaded from (e.g. the run's
            `best_<criterion>.ckpt`): its name and iteration go into the metadata.
        registered_model_name: also register it under this name (a new version).

    Returns:
        The model's URI (`models:/<model id>`); `runs:/<run_id>/model` loads it too.

    Example:
        >>> path = "checkpoints/best_dice.ckpt"
        >>> module = RunModule.from_checkpoint(path)  # doctest: +SKIP
        >>> uri = log_network(tracking_uri, run_id, module, path)  # doctest: +SKIP
        >>> network = mlflow.pytorch.load_model(uri)  # doctest: +SKIP

    """
    import mlflow.pytorch
    import torch

    from dacapo_hydra import __version__
    from dacapo_hydra.architectures.inference import InferenceNetwork

    checkpoint = Path(checkpoint)
    network = InferenceNetwork(module.architecture, module.head, module.task).eval()
    signature, example = _signature(network, module.architecture)
    metadata = _metadata(module, checkpoint)
    with active_run(tracking_uri, run_id), _quiet_about_pickle():
        info = mlflow.pytorch.log_model(
            network,
            name=MODEL_NAME,
            signature=signature,
            input_example=example,
            registered_model_name=registered_model_name,
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"dacapo-hydra=={__version__}",
            ],
            metadata=json.loads(json.dumps(metadata)),
            tags={"checkpoint": checkpoint.stem},
            step=metadata["iteration"],
            serialization_format="pickle",
        )
    log.info("logged model %s (%s) of run %s", info.model_uri, checkpoint.name, run_id)
    return info.model_uri


@contextmanager
def _quiet_about_pickle() -> Iterator[None]:
    """MLflow's warnings on every pickle save, silenced (the module docstring says why)."""
    pytorch_log = logging.getLogger("mlflow.pytorch")
    level = pytorch_log.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pytorch_log.setLevel(logging.ERROR)
        try:
            yield
        finally:
            pytorch_log.setLevel(level)


def _signature(network: Any, architecture: Any) -> tuple[Any, Any]:
    """The MLflow signature of `network` and its input example (zeros).

    Spatial axes are fixed when the example has the eval shape, else free (-1).
    """
    import numpy as np
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    eval_shape = tuple(int(s) for s in architecture.eval_input_shape)
    shape = example_shape(architecture)
    example = np.zeros((1, architecture.in_channels, *shape), dtype=np.float32)
    with torch.no_grad():
        output = network(torch.from_numpy(example)).numpy()
    fixed = shape == eval_shape
    spatial_in = shape if fixed else (-1,) * len(shape)
    spatial_out = output.shape[2:] if fixed else (-1,) * len(shape)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, example.shape[1], *spatial_in))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, output.shape[1], *spatial_out))]),
    )
    return signature, example


def _metadata(module: Any, checkpoint: Path) -> dict[str, Any]:
    """The MLflow model's metadata: shapes, voxel sizes, normalisation, its checkpoint."""
    import torch

    architecture = module.architecture
    spec = module.spec
    eval_shape = tuple(int(s) for s in architecture.eval_input_shape)
    voxel_size = list(spec.voxel_size)
    upsample = list(architecture.upsample_factor)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return {
        "axes": ["b", "c", *"zyx"[3 - architecture.dims :]],
        "eval_input_shape": list(eval_shape),
        "eval_output_shape": list(architecture.output_shape(eval_shape)),
        "input_voxel_size": voxel_size,
        "output_voxel_size": [v / u for v, u in zip(voxel_size, upsample, strict=True)],
        "normalize": spec.normalizer.to_dict(),
        "activation": f"{type(module.task).__name__}.activation",
        "checkpoint": checkpoint.stem,
        "iteration": int(state.get("global_step", 0)),
        "choices": dict(spec.config.get("choices") or {}),
    }


def dataset_inputs(datasplit: dict[str, Any], name: str) -> list[Any]:
    """The datasplit's datasets as MLflow dataset inputs: metadata only, no data copied.

    One `MetaDataset` per training and validation dataset, named as in the
    datasplit, its source the raw array (`<container>/<dataset>`), its profile
    the raw, ground truth and mask paths and the weight; the input tags say the
    context (`training`, `validation`) and the datasplit.

    Args:
        datasplit: the resolved `datasplit` node (plain containers).
        name: the datasplit's option name (e.g. `synthetic_3d`).

    Returns:
        `mlflow.entities.DatasetInput`s for `MlflowClient.log_inputs`.

    """
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    def path(array: dict[str, Any] | None) -> str | None:
        if not array:
            return None
        return f"{str(array['container']).rstrip('/')}/{array['dataset']}"

    inputs = []
    for context, key in (("training", "train"), ("validation", "validate")):
        for entry in datasplit.get(key) or []:
            raw = path(entry.get("raw"))
            if raw is None:
                continue
            with warnings.catch_warnings():
                # MLflow registers its local source twice and warns that it is ambiguous.
                warnings.simplefilter("ignore")
                source = resolve_dataset_source(raw)
            described = MetaDataset(source, name=str(entry.get("name") or raw)).to_dict()
            profile = {
                "raw": raw,
                "gt": path(entry.get("gt")),
                "mask": path(entry.get("mask")),
                "weight": entry.get("weight", 1.0),
            }
            dataset = Dataset(
                name=described["name"],
                digest=described["digest"],
                source_type=described["source_type"],
                source=described["source"],
                profile=json.dumps(profile),
            )
            tags = [InputTag(MLFLOW_DATASET_CONTEXT, context), InputTag("datasplit", name)]
            inputs.append(DatasetInput(dataset, tags))
    return inputs
