"""Command-line entry points: dacapo-train (train.py), -predict, -apply, -validate, -export.

One style across the commands that use a trained model:

- the model: `--run-id ID` (an MLflow run; `--checkpoint-name`, default its best
  checkpoint; `--tracking-uri`, default as :func:`dacapo_hydra.tracking.find_store`)
  or `--checkpoint PATH`;
- `--trust-checkpoint`: build whatever the checkpoint's stored config names; without
  it only the allow-list of :mod:`dacapo_hydra.trust` (a checkpoint is data);
- the input: `--input CONTAINER DATASET`;
- the output: `--output CONTAINER` and `--<kind>-dataset NAME` per written array;
- `--help` with examples and defaults, `--version`.

Nothing heavy (torch, Lightning, MLflow, MONAI, zarr) is imported until a
command runs, so `--help`, `--version` and shell completion answer at once.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from dacapo_hydra import __version__

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from dacapo_hydra.data.roi import Roi

log = logging.getLogger("dacapo_hydra")

# inference.predict.DTYPES, repeated so `--help` needs no torch (a test keeps them equal).
PREDICT_DTYPES = ("float32", "float16", "uint8")
STORE_HELP = (
    "MLflow store of --run-id (default: $MLFLOW_TRACKING_URI, else $DACAPO_OUTPUT_DIR/mlflow.db, "
    "else ./outputs/mlflow.db if it exists)"
)
USER_ERRORS = (ValueError, KeyError, FileNotFoundError)  # ConfigError is a ValueError


# Columns of the `dacapo-validate` table after the criterion (those the task has).
SUMMARY_SCORES = (
    "dice",
    "f1",
    "detection_f1",
    "mean_average_precision",
    "adapted_rand_error",
    "voi",
    "hausdorff_95",
)


def _train_task(cfg: DictConfig) -> float:
    """Hydra's task: train one run; the value a sweeper optimises.

    Bad input exits with status 2; SIGINT or SIGTERM with 130 or 143 (128 + the
    signal's number), after one line saying how to continue the run.
    """
    from dacapo_hydra.errors import ConfigError
    from dacapo_hydra.training.run import train
    from dacapo_hydra.training.stops import RunInterrupted

    try:
        result = train(cfg)
    except ConfigError as err:
        print(f"dacapo: error: {err}", file=sys.stderr)
        sys.exit(2)
    except RunInterrupted as stop:
        print(f"dacapo: {stop}", file=sys.stderr)
        sys.exit(stop.exit_code)
    if result.best_score is not None:
        return result.best_score
    return result.val_loss if result.val_loss is not None else result.final_loss


def _config_groups(self: Any, predicate: Callable[[str], bool], compact: bool = True) -> str:
    """Hydra's `Hydra.format_config_groups`, without the internal `schema/*` groups.

    Hydra's own copies its whole config repository (our structured schemas
    included) for every group it lists, which made `--help` take seconds; this
    lists every group from one copy.
    """
    from hydra._internal.config_repository import CachingConfigRepository, ConfigRepository
    from hydra.core.object_type import ObjectType

    from dacapo_hydra.config.user_dir import user_config_source

    # Hydra's help lists the search path without `hydra.searchpath`: add the user folder.
    search_path = copy.deepcopy(self.config_loader.config_search_path)
    schema = search_path.get_path().pop(-1)
    search_path.append("dacapo user config", user_config_source())
    search_path.append(schema.provider, schema.path)
    repo = CachingConfigRepository(ConfigRepository(config_search_path=search_path))

    def groups(parent: str) -> list[str]:
        found = []
        for child in repo.get_group_options(parent, ObjectType.GROUP):
            name = f"{parent}/{child}" if parent else child
            if name.split("/")[0] == "schema":
                continue
            if repo.get_group_options(name, ObjectType.CONFIG):
                found.append(name)
            found += groups(name)
        return found

    lines = []
    for group in sorted(g for g in groups("") if predicate(g)):
        options = sorted(repo.get_group_options(group, ObjectType.CONFIG))
        if compact:
            lines.append(f"{group}: {', '.join(options)}")
        else:
            lines.append(f"{group}:\n" + "\n".join(f"  {o}" for o in options))
    return "".join(f"{line}\n" for line in lines)


def _fast_help_groups() -> None:
    """Make `--help` list the config groups quickly, without `schema/*` (:func:`_config_groups`)."""
    from hydra._internal.hydra import Hydra

    Hydra.format_config_groups = _config_groups  # type: ignore[method-assign]


def train_main() -> None:
    """`dacapo-train` / `python train.py`: train the composed run; Hydra parses the command line.

    Example:
        `dacapo-train datasplit=synthetic_3d task=affinities iterations=1000`, or a
        sweep, one MLflow child run per combination:
        `dacapo-train -m task=distance,affinities architecture=unet_tiny,unet_small`.

    """
    if "--version" in sys.argv[1:]:
        from hydra import __version__ as hydra_version

        print(f"dacapo-train {__version__} (dacapo-hydra; Hydra {hydra_version})")
        return
    import hydra

    from dacapo_hydra.api import config_dir
    from dacapo_hydra.config import register_configs

    try:
        register_configs()
    except NotADirectoryError as err:
        _fail("dacapo-train", err)
    _fast_help_groups()
    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
    app(_train_task)()


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each option's help; the examples epilog as written."""


def _parser(prog: str, description: str, examples: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__} (dacapo-hydra)"
    )
    return parser


def _fail(prog: str, err: BaseException) -> NoReturn:
    print(f"{prog}: error: {err.args[0] if err.args else err}", file=sys.stderr)
    sys.exit(2)


def _model_arguments(parser: argparse.ArgumentParser, what: str = "the model") -> None:
    """`--run-id`/`--checkpoint`, `--checkpoint-name`, `--tracking-uri`: the same everywhere."""
    group = parser.add_argument_group(f"{what} (--run-id or --checkpoint)")
    group.add_argument("--run-id", help="an MLflow run id")
    group.add_argument(
        "--checkpoint", metavar="PATH", help="a dacapo-hydra Lightning checkpoint (.ckpt)"
    )
    group.add_argument(
        "--checkpoint-name",
        default="best",
        metavar="NAME",
        help="with --run-id: best (the best_<criterion> checkpoint of the task's criterion, "
        "or last if the run was never validated), last, best_<criterion>, iteration_<n>",
    )
    group.add_argument("--tracking-uri", metavar="URI", help=STORE_HELP)
    group.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="build whatever the checkpoint's stored config names (it runs code, like any "
        "Python); without it only dacapo_hydra architectures and tasks, torch.optim, "
        "monai.networks.nets and Lightning callbacks",
    )


def _input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        nargs=2,
        required=True,
        metavar=("CONTAINER", "DATASET"),
        help="the raw volume: a zarr container and the array (or multiscale group) in it",
    )


def _one_model(args: argparse.Namespace, legacy: str | None = None) -> None:
    """Exactly one of --run-id, --checkpoint (and an older positional form) is given."""
    given = [
        flag
        for flag, value in (("--run-id", args.run_id), ("--checkpoint", args.checkpoint))
        if value
    ]
    if legacy is not None:
        given.append("a positional model")
    if len(given) != 1:
        raise ValueError(
            "give a model: --run-id ID or --checkpoint PATH"
            if not given
            else f"give one model, not {' and '.join(given)}"
        )


def model_checkpoint(args: argparse.Namespace) -> Path:
    """The checkpoint `--run-id`/`--checkpoint-name` or `--checkpoint` names.

    Raises:
        FileNotFoundError: no store, no such run, or no such checkpoint of it.

    """
    from dacapo_hydra import tracking

    if args.checkpoint:
        return Path(args.checkpoint)
    uri = tracking.find_store(args.tracking_uri)
    name = "" if args.checkpoint_name == "best" else f"/{args.checkpoint_name}"
    return tracking.resolve_start(f"run:{args.run_id}{name}", uri)


def _roi(text: str | None) -> Roi | None:
    from dacapo_hydra.data.roi import Roi
    from dacapo_hydra.errors import ConfigError

    if text is None:
        return None
    try:
        pairs = [tuple(float(v) for v in part.split(":")) for part in text.split(",")]
        return Roi(tuple(a for a, _ in pairs), tuple(b - a for a, b in pairs))
    except ValueError:
        raise ConfigError(
            f"--roi {text!r}: expected begin:end per axis in nm, e.g. 0:800,0:800,0:800"
        ) from None


def _prediction_arguments(parser: argparse.ArgumentParser, dtypes: tuple[str, ...]) -> None:
    """Arguments of blockwise prediction shared by dacapo-predict and dacapo-apply."""
    _input_arguments(parser)
    parser.add_argument(
        "--roi", help="world ROI in nm: z0:z1,y0:y1,x0:x1 (default: the whole input)"
    )
    parser.add_argument("--dtype", default="float32", choices=dtypes, help="prediction dtype")
    parser.add_argument(
        "--workers",
        type=int,
        help="Dask LocalCluster workers (default 1: in process; with --devices one per GPU)",
    )
    parser.add_argument(
        "--scheduler", help="address of a running Dask scheduler (e.g. from dask-jobqueue)"
    )
    parser.add_argument(
        "--devices",
        metavar="GPUS",
        help="GPUs of the LocalCluster's workers, e.g. 0,1 or all: worker i sees only GPU "
        "i mod len(GPUS)",
    )
    parser.add_argument(
        "--mirror", action="store_true", help="test-time augmentation: average over flips"
    )
    parser.add_argument(
        "--input-shape",
        nargs="+",
        type=int,
        help="forward-pass input shape, voxels (default: the architecture's eval input shape)",
    )
    parser.add_argument(
        "--overlap",
        type=float,
        default=0.5,
        help="'same'-padding networks: sliding-window overlap, blended with Gaussian weights",
    )
    parser.add_argument(
        "--block-shape",
        nargs="+",
        type=int,
        help="'same'-padding networks: output voxels per block (a multiple of the stride)",
    )
    parser.add_argument(
        "--input-voxel-size", nargs="+", type=float, help="where the input has no metadata"
    )
    parser.add_argument(
        "--input-offset", nargs="+", type=float, help="where the input has no metadata"
    )


def _guarded(prog: str, command: Callable[[], None]) -> None:
    """Run `command`; bad input ends the program with one line and exit status 2."""
    try:
        command()
    except USER_ERRORS as err:
        _fail(prog, err)


def _workers(args: argparse.Namespace) -> tuple[int, list[str] | None]:
    """(Dask workers, their GPUs) from `--workers`, `--devices` and `--scheduler`, checked."""
    from dacapo_hydra.devices import parse_devices
    from dacapo_hydra.errors import ConfigError

    devices = parse_devices(args.devices)
    if devices and args.scheduler:
        raise ConfigError(
            f"--devices {args.devices} starts a LocalCluster; with --scheduler each worker uses "
            "the GPU its job was given (dask-jobqueue: --gres=gpu:1, processes=1)"
        )
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: expected at least 1")
    return args.workers or (len(devices) if devices else 1), devices


PREDICT_EXAMPLES = """\
  dacapo-predict --run-id <run id> --input data/volume.zarr raw/s0 --output predictions.zarr
  dacapo-predict --run-id <run id> --checkpoint-name last --input data/volume.zarr raw \\
      --output predictions.zarr --prediction-dataset distance --dtype uint8 --value-range -1 1
  dacapo-predict --checkpoint outputs/runs/<run>/checkpoints/last.ckpt \\
      --input data/volume.zarr raw --output predictions.zarr --roi 0:4000,0:8000,0:8000 --mirror
  dacapo-predict --run-id <run id> --input data/volume.zarr raw/s0 --output predictions.zarr \\
      --devices 0,1,2,3          # four Dask workers, one GPU each
"""


def predict_main(argv: list[str] | None = None) -> None:
    """`dacapo-predict`: blockwise prediction of a zarr volume with a trained model.

    Example:
        `dacapo-predict --run-id <run id> --input data/volume.zarr raw/s0 --output out.zarr`

    """
    parser = _parser(
        "dacapo-predict",
        "Predict a zarr volume blockwise with a trained model, into OME-NGFF zarr "
        "(<output>/<prediction-dataset>/s0). Resumable: rerun the same command after a kill "
        "(the same model, input and parameters; --overwrite starts afresh).",
        PREDICT_EXAMPLES,
    )
    _model_arguments(parser)
    _prediction_arguments(parser, PREDICT_DTYPES)
    parser.add_argument(
        "--output",
        nargs="+",
        required=True,
        metavar="CONTAINER",
        help="output zarr container (the older form --output CONTAINER DATASET still works)",
    )
    parser.add_argument(
        "--prediction-dataset", default="prediction", help="the prediction's group in --output"
    )
    parser.add_argument(
        "--value-range",
        nargs=2,
        type=float,
        default=(0.0, 1.0),
        metavar=("LO", "HI"),
        help="prediction range mapped to 0..255 for --dtype uint8 (distances: -1 1)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing prediction instead of resuming it (a rerun resumes only "
        "with the same model, input and parameters)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def command() -> None:
        from dacapo_hydra.inference.predict import predict

        _one_model(args)
        workers, devices = _workers(args)
        if len(args.output) > 2:
            raise ValueError(f"--output takes CONTAINER (and an optional DATASET): {args.output}")
        container, *legacy = args.output
        if legacy and args.prediction_dataset not in ("prediction", legacy[0]):
            raise ValueError(
                f"give the dataset once: --prediction-dataset or --output {container} D"
            )
        dataset = legacy[0] if legacy else args.prediction_dataset
        result = predict(
            str(model_checkpoint(args)),
            args.input[0],
            args.input[1],
            container,
            dataset,
            roi=_roi(args.roi),
            dtype=args.dtype,
            value_range=tuple(args.value_range),
            workers=workers,
            scheduler=args.scheduler,
            devices=devices,
            mirror=args.mirror,
            input_shape=args.input_shape,
            raw_voxel_size=args.input_voxel_size,
            raw_offset=args.input_offset,
            overlap=args.overlap,
            block_shape=args.block_shape,
            trust_checkpoint=args.trust_checkpoint,
            overwrite=args.overwrite,
        )
        print(
            f"dacapo-predict: wrote {result.container}/{result.dataset}/s0 ({result.roi}, voxel "
            f"size {result.voxel_size} nm): {result.blocks_done_now} of {result.blocks} blocks in "
            f"{result.seconds:.1f}s, {result.voxels_per_s:.3g} voxels/s"
        )

    _guarded("dacapo-predict", command)


def _params(pairs: list[str] | None) -> dict[str, float | int | str] | None:
    """`key=value` pairs as post-processing parameters (numbers where they parse)."""
    from dacapo_hydra.errors import ConfigError

    if pairs is None:
        return None
    out: dict[str, float | int | str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--params {pair!r}: expected key=value, e.g. threshold=0.5")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


APPLY_EXAMPLES = """\
  dacapo-apply --run-id <run id> --input data/volume.zarr raw/s0 --output segmentation.zarr
  dacapo-apply --run-id <run id> --criterion detection_f1 --input data/volume.zarr raw/s0 \\
      --output segmentation.zarr --workers 4
  dacapo-apply --checkpoint model.ckpt --params threshold=0.5 --connected-components \\
      --input data/volume.zarr raw/s0 --output segmentation.zarr --labels-dataset cells
"""


def _apply_criterion(args: argparse.Namespace) -> str | None:
    """The criterion whose best checkpoint and parameters apply uses (None: the task's)."""
    name = args.checkpoint_name
    if name == "best":
        return args.criterion
    if not name.startswith("best_"):
        raise ValueError(
            f"--checkpoint-name {name}: dacapo-apply uses a run's best_<criterion> checkpoint "
            "with the parameters validation chose for it; for another checkpoint give "
            "--checkpoint PATH --params KEY=VALUE ..."
        )
    criterion = name.removeprefix("best_")
    if args.criterion and args.criterion != criterion:
        raise ValueError(f"--checkpoint-name {name} and --criterion {args.criterion} disagree")
    return criterion


def apply_main(argv: list[str] | None = None) -> None:
    """`dacapo-apply`: predict blockwise, then post-process with the run's best parameters.

    Example:
        `dacapo-apply --run-id <run id> --input data/volume.zarr raw/s0 --output seg.zarr`

    """
    parser = _parser(
        "dacapo-apply",
        "Predict a zarr volume with an MLflow run's best checkpoint and post-process it "
        "blockwise with the parameters validation found best, into OME-NGFF zarr.",
        APPLY_EXAMPLES,
    )
    _model_arguments(parser)
    parser.add_argument(
        "--criterion", help="with --run-id: the score whose best to use (default: the task's)"
    )
    parser.add_argument(
        "--params",
        nargs="+",
        metavar="KEY=VALUE",
        help="with --checkpoint: post-processing parameters, e.g. threshold=0.5",
    )
    _prediction_arguments(parser, ("float32", "float16"))
    parser.add_argument("--output", required=True, metavar="CONTAINER", help="output container")
    parser.add_argument(
        "--prediction-dataset", default="prediction", help="the prediction's group in --output"
    )
    parser.add_argument(
        "--labels-dataset",
        default=None,
        help="name of the segmentation, an OME-Zarr label image written to "
        "<prediction-dataset>/labels/<name> (default: labels for instances, mask for the "
        "binary output of a semantic task)",
    )
    parser.add_argument(
        "--labels-block-shape", nargs="+", type=int, help="post-processing block, voxels"
    )
    parser.add_argument(
        "--context",
        nargs="+",
        type=int,
        help="voxels post-processing reads beyond each block per side "
        "(default: a quarter block for instances, 0 otherwise)",
    )
    parser.add_argument(
        "--connected-components",
        action="store_true",
        help="label connected components of a binary output (instances of a semantic task)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing outputs instead of resuming them (a rerun resumes only with "
        "the same model, input and parameters)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def command() -> None:
        from dacapo_hydra import tracking
        from dacapo_hydra.errors import ConfigError
        from dacapo_hydra.inference.apply import plan_apply

        _one_model(args)
        workers, devices = _workers(args)
        if args.run_id and args.params:
            raise ConfigError("--params goes with --checkpoint; a run brings its best parameters")
        criterion = _apply_criterion(args) if args.run_id else args.criterion
        uri = tracking.find_store(args.tracking_uri) if args.run_id else ""
        job = plan_apply(
            args.input[0],
            args.input[1],
            args.output,
            run_id=args.run_id,
            tracking_uri=uri,
            criterion=criterion,
            checkpoint=args.checkpoint,
            params=_params(args.params),
            prediction_dataset=args.prediction_dataset,
            labels_dataset=args.labels_dataset,
            roi=_roi(args.roi),
            dtype=args.dtype,
            mirror=args.mirror,
            input_shape=args.input_shape,
            overlap=args.overlap,
            block_shape=args.block_shape,
            labels_block_shape=args.labels_block_shape,
            context=args.context,
            connected_components=args.connected_components,
            raw_voxel_size=args.input_voxel_size,
            raw_offset=args.input_offset,
            trust_checkpoint=args.trust_checkpoint,
            overwrite=args.overwrite,
        )
        if job.model.criterion:
            print(
                f"dacapo-apply: {job.model.criterion} {job.model.score} at iteration "
                f"{job.model.iteration}: parameters {job.model.params}"
            )
        result = job.run(workers, args.scheduler, devices=devices)
        objects = f", {result.objects} objects" if result.objects is not None else ""
        print(
            f"dacapo-apply: wrote {args.output}/{result.prediction[1]}/s0 and "
            f"{args.output}/{result.labels[1]}/s0 ({result.roi}, voxel size {result.voxel_size} "
            f"nm, parameters {result.params}{objects}): prediction {result.predict_seconds:.1f}s, "
            f"post-processing {result.labels_seconds:.1f}s"
        )

    _guarded("dacapo-apply", command)


VALIDATE_EXAMPLES = """\
  dacapo-validate --run-id <run id>
  dacapo-validate --run-id <run id> --checkpoint-name last --scores dice voi
  dacapo-validate --checkpoint outputs/runs/<run>/checkpoints/last.ckpt
  dacapo-validate <run id or checkpoint path>      (the older positional form)
"""


def validate_main(argv: list[str] | None = None) -> None:
    """`dacapo-validate`: validate a model on its datasplit's validation datasets.

    Example:
        `dacapo-validate --run-id <run id> --checkpoint-name last`

    """
    parser = _parser(
        "dacapo-validate",
        "Validate a checkpoint (or an MLflow run's) on whole validation volumes of the "
        "datasplit it was trained with, and print a score table.",
        VALIDATE_EXAMPLES,
    )
    parser.add_argument(
        "model", nargs="?", help="(older form) a checkpoint path or an MLflow run id"
    )
    _model_arguments(parser)
    parser.add_argument(
        "--scores", nargs="+", help="scores to show (default: the task's criterion and a few more)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    def command() -> None:
        _one_model(args, args.model)
        if args.model:
            path = Path(args.model)
            if path.is_file() or path.suffix == ".ckpt" or len(path.parts) > 1:
                args.checkpoint = args.model
            else:
                args.run_id = args.model
        _validate(model_checkpoint(args), args.scores, args.trust_checkpoint)

    _guarded("dacapo-validate", command)


def _validate(path: Path, scores: list[str] | None, trust_checkpoint: bool = False) -> None:
    """Validate the checkpoint at `path` and print its score table."""
    from dacapo_hydra.data.datasplit import DataSplit
    from dacapo_hydra.data.normalize import Normalizer
    from dacapo_hydra.training.module import RunModule
    from dacapo_hydra.training.validation import Validator, params_key

    module = RunModule.from_checkpoint(path, trust=trust_checkpoint)
    # The checkpoint's normalisation, as in training: nothing is re-measured.
    split = DataSplit.from_config(
        module.hparams["config"]["datasplit"], Normalizer.from_hparams(module.hparams)
    )
    if not split.validate:
        raise ValueError(f"the datasplit of {path} has no validation datasets")
    validator = Validator(split, module.task)
    rows = validator.run(module)
    criterion = module.task.criterion
    names = scores or [criterion] + [n for n in SUMMARY_SCORES if n != criterion]
    names = [n for n in names if any(n in r.scores for r in rows)]
    header = ["dataset", "params", *names]
    table = [
        [r.dataset, params_key(r.params), *(f"{r.scores.get(n, float('nan')):.4g}" for n in names)]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table, strict=True)]
    print(f"checkpoint {path}")
    for line in [header, *table]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)))
    best = validator.best_set(rows, 0, criterion)
    if best is not None:
        print(f"best {criterion}: {best.score:.4g} with {best.params}")


EXPORT_EXAMPLES = """\
  dacapo-export --run-id <run id> --output exported_model/
  dacapo-export --run-id <run id> --checkpoint-name last --output exported_model/ --bioimageio
  dacapo-export --checkpoint outputs/runs/<run>/checkpoints/best_dice.ckpt --output exported/ \\
      --input-shape 132 132 132
  dacapo-export <checkpoint> <folder>              (the older positional form)
"""


def export_main(argv: list[str] | None = None) -> None:
    """`dacapo-export`: export a trained model to a folder that applies without training code.

    Example:
        `dacapo-export --run-id <run id> --output exported_model/`

    """
    parser = _parser(
        "dacapo-export",
        "Export a trained model to a folder that applies without the training code: "
        "torch.export and TorchScript programs, shapes, voxel sizes, normalisation, apply.py.",
        EXPORT_EXAMPLES,
    )
    parser.add_argument("legacy_checkpoint", nargs="?", metavar="CHECKPOINT", help="(older form)")
    parser.add_argument("legacy_folder", nargs="?", metavar="FOLDER", help="(older form)")
    _model_arguments(parser)
    parser.add_argument("--output", metavar="FOLDER", help="the folder to write")
    parser.add_argument(
        "--input-shape",
        type=int,
        nargs="+",
        default=None,
        help="spatial input voxels (default: the architecture's eval input shape)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the folder")
    parser.add_argument(
        "--bioimageio", action="store_true", help="also write a bioimage.io rdf.yaml"
    )
    parser.add_argument("--author", action="append", help="author name (bioimage.io)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def command() -> None:
        from dacapo_hydra.export.model import export_model

        _one_model(args, args.legacy_checkpoint)
        if args.legacy_checkpoint:
            args.checkpoint = args.legacy_checkpoint
        if args.output and args.legacy_folder:
            raise ValueError("give the folder once: --output FOLDER")
        folder = args.output or args.legacy_folder
        if not folder:
            raise ValueError("give the output folder: --output FOLDER")
        exported = export_model(
            model_checkpoint(args),
            folder,
            args.input_shape,
            args.overwrite,
            bioimageio=args.bioimageio,
            authors=args.author,
            trust_checkpoint=args.trust_checkpoint,
        )
        print(f"dacapo-export: wrote {exported.folder}")

    _guarded("dacapo-export", command)
