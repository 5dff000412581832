"""The Python API: the command line's verbs, for notebooks and scripts.

`compose` a run, `train` it, `runs` to compare, `load_model` a checkpoint,
`validate` it, `predict` and `post_process` a volume blockwise, `apply` a run's best
model and parameters in one step, `export_model` for use without dacapo-hydra.
Options are keyword-only; prediction and application take the same option objects as
their commands (:mod:`dacapo_hydra.inference.options`).

Example:
    >>> from dacapo_hydra import apply, compose, runs, train
    >>> from dacapo_hydra import ApplyOptions
    >>> cfg = compose(datasplit="synthetic_2d", task="affinities", overrides=["iterations=20"])
    >>> result = train(cfg)  # doctest: +SKIP
    >>> runs()[["run_name", "task", "criterion", "best_score"]]  # doctest: +SKIP
    >>> apply(  # doctest: +SKIP
    ...     "data/volume.zarr", "raw", "segmentation.zarr",
    ...     options=ApplyOptions(run_id=result.run_id),
    ... )

"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from omegaconf import DictConfig

    from dacapo_hydra.export.model import ExportedModel
    from dacapo_hydra.inference.apply import ApplyResult
    from dacapo_hydra.inference.labels import LabelsResult
    from dacapo_hydra.inference.options import (
        ApplyOptions,
        Execution,
        LabelsOptions,
        PredictOptions,
    )
    from dacapo_hydra.inference.predict import PredictResult
    from dacapo_hydra.model.trained import TrainedModel
    from dacapo_hydra.tasks.base import Params
    from dacapo_hydra.training.run import TrainResult
    from dacapo_hydra.training.validation import Best, ScoreRow


def config_dir() -> Path:
    """The `conf/` folder: the checkout's, or the copy installed inside the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no conf/config.yaml next to {here} or inside it")


def compose(
    datasplit: str | None = None,
    *,
    architecture: str | None = None,
    task: str | None = None,
    trainer: str | None = None,
    overrides: Sequence[str] = (),
    config_name: str = "config",
    return_hydra: bool = False,
) -> DictConfig:
    """Compose a run config from group options and Hydra overrides.

    Args:
        datasplit: option of the `datasplit` group (default: the config's).
        architecture: option of the `architecture` group.
        task: option of the `task` group.
        trainer: option of the `trainer` group.
        overrides: further overrides, as on the command line (`iterations=100`).
        config_name: the primary config.
        return_hydra: keep Hydra's own node (`hydra.*`: sweeper, launcher, ...).

    Returns:
        The composed config, with the chosen options under `choices`.

    Example:
        >>> cfg = compose(datasplit="synthetic_2d", task="affinities", overrides=["seed=1"])
        >>> cfg.choices.task, cfg.seed
        ('affinities', 1)

    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    from dacapo_hydra.config import register_configs

    register_configs()
    groups = {
        "datasplit": datasplit,
        "architecture": architecture,
        "task": task,
        "trainer": trainer,
    }
    args = [f"{g}={v}" for g, v in groups.items() if v is not None] + list(overrides)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name, overrides=args, return_hydra_config=True)
    from dacapo_hydra.tracking import mark_modified

    choices = mark_modified({g: cfg.hydra.runtime.choices.get(g) for g in groups}, args)
    with open_dict(cfg):
        if not return_hydra:
            del cfg["hydra"]
        cfg.choices = choices
    return cfg


def train(cfg: DictConfig) -> TrainResult:
    """Train a composed config; returns the MLflow run id, final losses and checkpoint.

    Example:
        >>> cfg = compose(datasplit="synthetic_2d", overrides=["iterations=20"])
        >>> result = train(cfg)  # doctest: +SKIP
        >>> result.run_id, result.best_score  # doctest: +SKIP

    """
    from dacapo_hydra.training.run import train as _train

    return _train(cfg)


def runs(tracking_uri: str | None = None, *, experiment: str = "dacapo") -> pd.DataFrame:
    """The training runs of an MLflow experiment as a table, newest first.

    One row per training run: its group choices, criterion, best score, iteration and
    post-processing parameters (:func:`dacapo_hydra.tracking.table.runs_table`).

    Args:
        tracking_uri: the MLflow store (default: as the commands find it,
            :func:`dacapo_hydra.tracking.find_store`).
        experiment: the experiment's name (`mlflow.experiment_name`).

    Example:
        >>> from dacapo_hydra import runs
        >>> table = runs("sqlite:///outputs/mlflow.db")  # doctest: +SKIP
        >>> table.sort_values("best_score", ascending=False)[["run_name", "best_score"]].head()
        ... # doctest: +SKIP

    """
    from dacapo_hydra.tracking.table import runs_table

    return runs_table(tracking_uri, experiment)


def load_model(checkpoint: str | Path, *, trust_checkpoint: bool = False) -> TrainedModel:
    """A trained model from a checkpoint alone, in eval mode on the CPU.

    The network, its head and its task are rebuilt from the config stored in the
    checkpoint; only the targets on :data:`dacapo_hydra.trust.RULES` are built unless
    `trust_checkpoint` (a checkpoint is data).

    Example:
        >>> from dacapo_hydra import load_model
        >>> model = load_model("outputs/runs/<run>/checkpoints/best_f1.ckpt")  # doctest: +SKIP
        >>> model.task.criterion, model.architecture.eval_input_shape  # doctest: +SKIP
        ('f1', (84, 84, 84))

    """
    from dacapo_hydra.export.handover import remember
    from dacapo_hydra.model.load import load

    model = load(checkpoint, trust=trust_checkpoint)
    return remember(model, checkpoint, trust_checkpoint)


@dataclass
class Validation:
    """The scores of one checkpoint on its run's validation datasets.

    Attributes:
        rows: one per (dataset, post-processing parameter set).
        best: the parameter set the task's criterion picks, or None if no set scored.

    """

    rows: list[ScoreRow]
    best: Best | None


def validate(model: str | Path | TrainedModel, *, trust_checkpoint: bool = False) -> Validation:
    """Score a model on its own datasplit's validation volumes, as training validates.

    Each validation volume is predicted whole, post-processed with every parameter set
    of the task's grid and scored (`evaluation/`); the criterion picks the best set.
    The checkpoint's normalisation is used: nothing is re-measured.

    Args:
        model: a checkpoint path or a loaded model (:func:`load_model`).
        trust_checkpoint: as :func:`load_model`.

    Raises:
        ValueError: the datasplit has no validation datasets.

    Example:
        >>> from dacapo_hydra import validate
        >>> result = validate("outputs/runs/<run>/checkpoints/last.ckpt")  # doctest: +SKIP
        >>> result.best.score, result.best.params  # doctest: +SKIP
        (0.91, {'threshold': 0.5, 'min_size': 50})

    """
    from dacapo_hydra.data.datasplit import DataSplit
    from dacapo_hydra.training.validation import Validator

    module = (
        load_model(model, trust_checkpoint=trust_checkpoint)
        if isinstance(model, str | Path)
        else model
    )
    split = DataSplit.from_config(module.spec.datasplit, module.spec.normalizer)
    if not split.validate:
        raise ValueError(f"the datasplit of {model} has no validation datasets")
    validator = Validator(split, module.task)
    rows = validator.run(module)
    return Validation(rows, validator.best_set(rows, 0, module.task.criterion))


def predict(
    model: str | Path | TrainedModel,
    raw_container: str | Path,
    raw_dataset: str,
    out_container: str | Path,
    out_dataset: str = "prediction",
    *,
    options: PredictOptions | None = None,
    execution: Execution | None = None,
) -> PredictResult:
    """Predict a zarr volume blockwise into an OME-Zarr image (`dacapo-predict`).

    Resumable: a rerun with the same model, input and options does only the blocks
    not yet written. See :func:`dacapo_hydra.inference.predict.predict`.

    A model in memory goes to Dask workers (`execution` with workers or a scheduler)
    as a checkpoint: the one :func:`load_model` read it from while its weights are
    unchanged, else (for a LocalCluster) its weights and config saved to a temporary
    file for the call; for a remote scheduler a model without its checkpoint is
    refused before any worker starts (:mod:`dacapo_hydra.export.handover`).

    Example:
        >>> from dacapo_hydra import Execution, PredictOptions, predict
        >>> predict(  # doctest: +SKIP
        ...     "best_f1.ckpt", "data/volume.zarr", "raw", "out.zarr",
        ...     options=PredictOptions(dtype="uint8", value_range=(-1, 1)),
        ...     execution=Execution(workers=2),
        ... ).array
        ('out.zarr', 'prediction/s0')

    """
    from dacapo_hydra.export.handover import for_workers
    from dacapo_hydra.inference.predict import predict as _predict

    with for_workers(model, execution, options) as (handed, handed_options):
        return _predict(
            handed,
            raw_container,
            raw_dataset,
            out_container,
            out_dataset,
            options=handed_options,
            execution=execution,
        )


def post_process(
    model: str | Path | TrainedModel,
    pred_container: str | Path,
    pred_dataset: str,
    out_container: str | Path,
    out_dataset: str | None = None,
    *,
    params: Params,
    options: LabelsOptions | None = None,
    trust_checkpoint: bool = False,
    execution: Execution | None = None,
    **fields: Any,
) -> LabelsResult:
    """Post-process a prediction blockwise with the model's task into an OME-Zarr label image.

    Instances are merged across blocks and size-filtered globally
    (:mod:`dacapo_hydra.inference.labels`); semantic tasks give a mask. For an array in
    memory, `load_model(...).task.post_process(prediction, params)`.

    Args:
        model: the checkpoint (or loaded model) whose task made the prediction.
        pred_container: the prediction's zarr container.
        pred_dataset: its image group or array (as :func:`predict` wrote it).
        out_container: output container.
        out_dataset: output label group (default: as `dacapo-apply` writes it,
            :func:`~dacapo_hydra.inference.labels.labels_dataset`).
        params: one parameter set of the task's grid (e.g. a run's best).
        options: block shape, context, connected components (of a semantic mask),
            overwrite, levels (:class:`~dacapo_hydra.inference.options.LabelsOptions`).
        trust_checkpoint: as :func:`load_model`.
        execution: where the blocks run (default: in this process).
        **fields: fields of `options` given one by one (`connected_components=True`).

    Example:
        >>> from dacapo_hydra import post_process
        >>> post_process(  # doctest: +SKIP
        ...     "best_f1.ckpt", "out.zarr", "prediction", "out.zarr",
        ...     params={"threshold": 0.5, "min_size": 50},
        ... ).dataset
        'prediction/labels/labels'

    """
    from dacapo_hydra.inference.labels import labels_dataset, post_process_blockwise
    from dacapo_hydra.inference.options import LabelsOptions

    module = (
        load_model(model, trust_checkpoint=trust_checkpoint)
        if isinstance(model, str | Path)
        else model
    )
    options = replace(options or LabelsOptions(), **fields)
    if out_dataset is None:
        instances = module.task.instances or options.connected_components
        out_dataset = labels_dataset(instances, pred_container, pred_dataset, out_container)
    where = (pred_container, pred_dataset, out_container, out_dataset)
    return post_process_blockwise(module.task, params, *where, options, execution=execution)


def apply(
    raw_container: str | Path,
    raw_dataset: str,
    out_container: str | Path,
    *,
    options: ApplyOptions,
    execution: Execution | None = None,
) -> ApplyResult:
    """Predict and post-process a volume with a run's best model and parameters (`dacapo-apply`).

    See :func:`dacapo_hydra.inference.apply.apply`.

    Example:
        >>> from dacapo_hydra import ApplyOptions, apply
        >>> apply(  # doctest: +SKIP
        ...     "data/volume.zarr", "raw", "segmentation.zarr",
        ...     options=ApplyOptions(run_id="<run id>"),
        ... ).labels
        ('segmentation.zarr', 'prediction/labels/labels')

    """
    from dacapo_hydra.inference.apply import apply as _apply

    return _apply(raw_container, raw_dataset, out_container, options=options, execution=execution)


def export_model(
    checkpoint: str | Path,
    folder: str | Path,
    *,
    input_shape: Sequence[int] | None = None,
    overwrite: bool = False,
    bioimageio: bool = False,
    authors: Sequence[str] | None = None,
    trust_checkpoint: bool = False,
    name: str | None = None,
) -> ExportedModel:
    """Export a checkpoint's network as a torch.export program with a standalone `apply.py`.

    See :func:`dacapo_hydra.export.model.export_model` (`dacapo-export`).

    Example:
        >>> from dacapo_hydra import export_model
        >>> export_model("best_f1.ckpt", "exported", bioimageio=True).folder  # doctest: +SKIP
        PosixPath('exported')

    """
    from dacapo_hydra.export.model import export_model as _export

    return _export(
        checkpoint,
        folder,
        input_shape=list(input_shape) if input_shape is not None else None,
        overwrite=overwrite,
        bioimageio=bioimageio,
        authors=list(authors) if authors is not None else None,
        trust_checkpoint=trust_checkpoint,
        name=name,
    )
