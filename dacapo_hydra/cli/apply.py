"""`dacapo-apply`: predict blockwise, then post-process with a run's best parameters."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from dacapo_hydra.cli.common import (
    check_writable,
    configure_logging,
    execution,
    guarded_blocks,
    model_arguments,
    one_model,
    option_arguments,
    option_values,
    parser,
    prediction_arguments,
    prediction_options,
)
from dacapo_hydra.errors import ConfigError

if TYPE_CHECKING:
    from dacapo_hydra.inference.options import ApplyOptions

# ApplyOptions' fields the model arguments give (or --params), and LabelsOptions' that
# the prediction's options set (overwrite, levels) or that stay as planned.
MODEL_FIELDS = ("run_id", "tracking_uri", "checkpoint", "params")
LABELS_SKIP = ("merge_fraction", "overwrite", "levels")
LABELS_FLAGS = {"block_shape": "labels-block-shape"}

EXAMPLES = """\
  dacapo-apply --run-id <run id> --input data/volume.zarr raw/s0 --output segmentation.zarr
  dacapo-apply --run-id <run id> --criterion detection_f1 --input data/volume.zarr raw/s0 \\
      --output segmentation.zarr --workers 4
  dacapo-apply --checkpoint model.ckpt --params threshold=0.5 --connected-components \\
      --input data/volume.zarr raw/s0 --output segmentation.zarr --labels-dataset cells
  dacapo-apply --run-id <run id> --input data/volume.zarr raw --output seg.zarr --dry-run
  dacapo-apply --run-id <run id> --input data/volume.zarr raw --output seg.zarr --levels 4
"""


def parse_params(pairs: list[str] | None) -> dict[str, float | int | str] | None:
    """`key=value` pairs as post-processing parameters (numbers where they parse).

    Example:
        >>> parse_params(["threshold=0.5", "min_size=20", "mode=fast"])
        {'threshold': 0.5, 'min_size': 20, 'mode': 'fast'}

    """
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


def apply_criterion(args: argparse.Namespace) -> str | None:
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


def apply_parser() -> argparse.ArgumentParser:
    """The command line of `dacapo-apply`."""
    from dacapo_hydra.inference.options import APPLY_DTYPES, ApplyOptions, LabelsOptions

    made = parser(
        "dacapo-apply",
        "Predict a zarr volume with an MLflow run's best checkpoint and post-process it "
        "blockwise with the parameters validation found best, into OME-NGFF zarr.",
        EXAMPLES,
    )
    model_arguments(made)
    made.add_argument(
        "--params",
        nargs="+",
        metavar="KEY=VALUE",
        help="with --checkpoint: post-processing parameters, e.g. threshold=0.5",
    )
    prediction_arguments(made, APPLY_DTYPES, skip=("value_range",))
    made.add_argument("--output", required=True, metavar="CONTAINER", help="output container")
    option_arguments(made, ApplyOptions, skip=MODEL_FIELDS)
    option_arguments(made, LabelsOptions, skip=LABELS_SKIP, flags=LABELS_FLAGS)
    made.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything and print the block plan, shapes, outputs and an estimated "
        "prediction time; write nothing",
    )
    return made


def apply_options(args: argparse.Namespace) -> ApplyOptions:
    """The application's options from its command line (the MLflow store found, if a run)."""
    from dacapo_hydra import tracking
    from dacapo_hydra.inference.options import ApplyOptions, LabelsOptions

    if args.run_id and args.params:
        raise ConfigError("--params goes with --checkpoint; a run brings its best parameters")
    criterion = apply_criterion(args) if args.run_id else args.criterion
    uri = tracking.find_store(args.tracking_uri) if args.run_id else ""
    return ApplyOptions(
        run_id=args.run_id,
        tracking_uri=uri,
        criterion=criterion,
        checkpoint=args.checkpoint,
        params=parse_params(args.params),
        prediction=prediction_options(args, skip=("value_range",)),
        labels=LabelsOptions(
            **option_values(args, LabelsOptions, skip=LABELS_SKIP, flags=LABELS_FLAGS)
        ),
        **option_values(args, ApplyOptions, skip=(*MODEL_FIELDS, "criterion")),
    )


def apply_main(argv: list[str] | None = None) -> None:
    """`dacapo-apply`: predict blockwise, then post-process with the run's best parameters.

    Example:
        `dacapo-apply --run-id <run id> --input data/volume.zarr raw/s0 --output seg.zarr`

    """
    args = apply_parser().parse_args(argv)
    configure_logging(args.verbose)

    def command() -> None:
        from dacapo_hydra.inference.apply import plan_apply

        one_model(args)
        where = execution(args)
        check_writable(args.output)
        job = plan_apply(args.input[0], args.input[1], args.output, options=apply_options(args))
        if job.model.criterion:
            print(
                f"dacapo-apply: {job.model.criterion} {job.model.score} at iteration "
                f"{job.model.iteration}: parameters {job.model.params}"
            )
        if args.dry_run:
            from dacapo_hydra.cli.dry_run import describe_prediction

            for line in describe_prediction(job.prediction, where.workers):
                print(f"dacapo-apply: dry run: {line}")
            print(
                f"dacapo-apply: dry run: then labels {job.labels.out_container}/"
                f"{job.labels.out_dataset}/s0 with parameters {job.model.params}"
            )
            return
        result = job.run(where)
        objects = f", {result.objects} objects" if result.objects is not None else ""
        print(
            f"dacapo-apply: wrote {args.output}/{result.prediction[1]}/s0 and "
            f"{args.output}/{result.labels[1]}/s0 ({result.roi}, voxel size {result.voxel_size} "
            f"nm, parameters {result.params}{objects}): prediction {result.predict_seconds:.1f}s, "
            f"post-processing {result.labels_seconds:.1f}s"
        )

    guarded_blocks("dacapo-apply", command, args.output)
