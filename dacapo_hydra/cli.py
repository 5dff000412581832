"""Command-line entry points (`dacapo-train`, `python train.py`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from dacapo_hydra import tracking
from dacapo_hydra.api import config_dir
from dacapo_hydra.config import register_configs
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.errors import ConfigError
from dacapo_hydra.predict import DTYPES, predict
from dacapo_hydra.run import train

log = logging.getLogger("dacapo_hydra")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _train(cfg: DictConfig) -> float:
    try:
        result = train(cfg)
    except ConfigError as err:
        print(f"dacapo: error: {err}", file=sys.stderr)
        sys.exit(2)
    if result.best_score is not None:
        return result.best_score
    return result.val_loss if result.val_loss is not None else result.final_loss


def train_main() -> None:
    """Train the composed run; Hydra parses the command line (`-m` sweeps)."""
    register_configs()
    _train()


def _roi(text: str | None) -> Roi | None:
    if text is None:
        return None
    try:
        pairs = [tuple(float(v) for v in part.split(":")) for part in text.split(",")]
        return Roi(tuple(a for a, _ in pairs), tuple(b - a for a, b in pairs))
    except ValueError:
        raise ConfigError(
            f"--roi {text!r}: expected begin:end per axis in nm, e.g. 0:800,0:800,0:800"
        ) from None


def _model_arguments(parser: argparse.ArgumentParser, checkpoint_default: str | None) -> None:
    """Arguments naming a model: a checkpoint, or an MLflow run."""
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="a Lightning checkpoint (.ckpt) of a dacapo-hydra run")
    model.add_argument(
        "--run-id", help="an MLflow run id; see --checkpoint-name and --tracking-uri"
    )
    if checkpoint_default is not None:
        parser.add_argument(
            "--checkpoint-name",
            default=checkpoint_default,
            help="with --run-id: last, best_<criterion>, ...",
        )
    parser.add_argument("--tracking-uri", default="sqlite:///outputs/mlflow.db")


def _prediction_arguments(parser: argparse.ArgumentParser, dtypes: tuple[str, ...]) -> None:
    """Arguments of blockwise prediction shared by dacapo-predict and dacapo-apply."""
    parser.add_argument("--input", nargs=2, required=True, metavar=("CONTAINER", "DATASET"))
    parser.add_argument(
        "--roi", help="world ROI in nm: z0:z1,y0:y1,x0:x1 (default: the whole input)"
    )
    parser.add_argument("--dtype", default="float32", choices=dtypes)
    parser.add_argument(
        "--workers", type=int, default=1, help="Dask LocalCluster workers (1: in process)"
    )
    parser.add_argument(
        "--scheduler", help="address of a running Dask scheduler (e.g. from dask-jobqueue)"
    )
    parser.add_argument(
        "--mirror", action="store_true", help="test-time augmentation: average over flips"
    )
    parser.add_argument(
        "--input-shape", nargs="+", type=int, help="forward-pass input shape, voxels"
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


def predict_main(argv: list[str] | None = None) -> None:
    """`dacapo-predict`: blockwise prediction of a zarr volume with a trained model."""
    parser = argparse.ArgumentParser(
        prog="dacapo-predict",
        description="Predict a zarr volume blockwise with a trained model, into OME-NGFF zarr.",
    )
    _model_arguments(parser, "last")
    _prediction_arguments(parser, DTYPES)
    parser.add_argument("--output", nargs=2, required=True, metavar=("CONTAINER", "DATASET"))
    parser.add_argument(
        "--value-range",
        nargs=2,
        type=float,
        default=(0.0, 1.0),
        metavar=("LO", "HI"),
        help="prediction range mapped to 0..255 for --dtype uint8 (distances: -1 1)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        checkpoint = args.checkpoint
        if args.run_id:
            uri, _ = tracking.resolve_store(args.tracking_uri, ".")
            checkpoint = str(tracking.checkpoint_for_run(uri, args.run_id, args.checkpoint_name))
        result = predict(
            checkpoint,
            args.input[0],
            args.input[1],
            args.output[0],
            args.output[1],
            roi=_roi(args.roi),
            dtype=args.dtype,
            value_range=tuple(args.value_range),
            workers=args.workers,
            scheduler=args.scheduler,
            mirror=args.mirror,
            input_shape=args.input_shape,
            raw_voxel_size=args.input_voxel_size,
            raw_offset=args.input_offset,
            overlap=args.overlap,
            block_shape=args.block_shape,
        )
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as err:
        print(f"dacapo-predict: error: {err.args[0] if err.args else err}", file=sys.stderr)
        sys.exit(2)
    print(
        f"dacapo-predict: wrote {result.container}/{result.dataset}/s0 ({result.roi}, voxel size "
        f"{result.voxel_size} nm): {result.blocks_done_now} of {result.blocks} blocks in "
        f"{result.seconds:.1f}s, {result.voxels_per_s:.3g} voxels/s"
    )


def _params(pairs: list[str] | None) -> dict[str, float | int | str] | None:
    """`key=value` pairs as post-processing parameters (numbers where they parse)."""
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


def apply_main(argv: list[str] | None = None) -> None:
    """`dacapo-apply`: predict blockwise, then post-process with the run's best parameters."""
    parser = argparse.ArgumentParser(
        prog="dacapo-apply",
        description="Predict a zarr volume with an MLflow run's best checkpoint and post-process "
        "it blockwise with the parameters validation found best, into OME-NGFF zarr.",
    )
    _model_arguments(parser, None)
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
    parser.add_argument("--output", required=True, metavar="CONTAINER")
    parser.add_argument("--prediction-dataset", default="prediction")
    parser.add_argument(
        "--labels-dataset",
        default=None,
        help="post-processed output group (default: labels for instances, mask for the binary "
        "output of a semantic task)",
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        from dacapo_hydra.apply import plan_apply

        uri = tracking.resolve_store(args.tracking_uri, ".")[0] if args.run_id else ""
        if args.run_id and args.params:
            raise ConfigError("--params goes with --checkpoint; a run brings its best parameters")
        job = plan_apply(
            args.input[0],
            args.input[1],
            args.output,
            run_id=args.run_id,
            tracking_uri=uri,
            criterion=args.criterion,
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
        )
        if job.model.criterion:
            print(
                f"dacapo-apply: {job.model.criterion} {job.model.score} at iteration "
                f"{job.model.iteration}: parameters {job.model.params}"
            )
        result = job.run(args.workers, args.scheduler)
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as err:
        print(f"dacapo-apply: error: {err.args[0] if err.args else err}", file=sys.stderr)
        sys.exit(2)
    objects = f", {result.objects} objects" if result.objects is not None else ""
    print(
        f"dacapo-apply: wrote {args.output}/{result.prediction[1]}/s0 and "
        f"{args.output}/{result.labels[1]}/s0 ({result.roi}, voxel size {result.voxel_size} nm, "
        f"parameters {result.params}{objects}): prediction {result.predict_seconds:.1f}s, "
        f"post-processing {result.labels_seconds:.1f}s"
    )


def validate_main(argv: list[str] | None = None) -> None:
    """`dacapo-validate`: validate a checkpoint on its datasplit's validation datasets."""
    parser = argparse.ArgumentParser(
        prog="dacapo-validate",
        description="Validate a checkpoint (or an MLflow run's) on whole validation volumes "
        "and print a score table.",
    )
    parser.add_argument("model", help="a checkpoint path, or an MLflow run id")
    parser.add_argument("--checkpoint-name", default=None, help="with a run id (default: its best)")
    parser.add_argument("--tracking-uri", default="sqlite:///outputs/mlflow.db")
    parser.add_argument(
        "--scores", nargs="+", help="scores to show (default: the task's criterion and a few more)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        from dacapo_hydra.data.datasplit import DataSplit
        from dacapo_hydra.data.normalize import Normalizer
        from dacapo_hydra.run import module_from_checkpoint
        from dacapo_hydra.validation import Validator, params_key

        path = Path(args.model)
        if not path.is_file():
            uri, _ = tracking.resolve_store(args.tracking_uri, ".")
            start = f"run:{args.model}" + (
                f"/{args.checkpoint_name}" if args.checkpoint_name else ""
            )
            path = tracking.resolve_start(start, uri)
        module = module_from_checkpoint(path)
        # The checkpoint's normalisation, as in training: nothing is re-measured.
        split = DataSplit.from_config(
            module.hparams["config"]["datasplit"], Normalizer.from_hparams(module.hparams)
        )
        if not split.validate:
            raise ValueError(f"the datasplit of {path} has no validation datasets")
        validator = Validator(split, module.task)
        rows = validator.run(module)
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as err:
        print(f"dacapo-validate: error: {err.args[0] if err.args else err}", file=sys.stderr)
        sys.exit(2)
    criterion = module.task.criterion
    names = args.scores or [criterion] + [
        n for n in ("dice", "f1", "voi", "adapted_rand_error", "hausdorff_95") if n != criterion
    ]
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
