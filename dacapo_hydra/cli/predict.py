"""`dacapo-predict`: blockwise prediction of a zarr volume with a trained model."""

from __future__ import annotations

import argparse

from dacapo_hydra.cli.common import (
    check_writable,
    configure_logging,
    execution,
    guarded_blocks,
    model_arguments,
    model_checkpoint,
    one_model,
    parser,
    prediction_arguments,
    prediction_options,
)

EXAMPLES = """\
  dacapo-predict --run-id <run id> --input data/volume.zarr raw/s0 --output predictions.zarr
  dacapo-predict --run-id <run id> --checkpoint-name last --input data/volume.zarr raw \\
      --output predictions.zarr --prediction-dataset distance --dtype uint8 --value-range -1 1
  dacapo-predict --checkpoint outputs/runs/<run>/checkpoints/last.ckpt \\
      --input data/volume.zarr raw --output predictions.zarr --roi 0:4000,0:8000,0:8000 --mirror
  dacapo-predict --run-id <run id> --input data/volume.zarr raw/s0 --output predictions.zarr \\
      --devices 0,1,2,3          # four Dask workers, one GPU each
  dacapo-predict --run-id <run id> --input data/volume.zarr raw --output p.zarr --dry-run
  dacapo-predict --run-id <run id> --input data/volume.zarr raw --output p.zarr --levels 4
"""


def predict_parser() -> argparse.ArgumentParser:
    """The command line of `dacapo-predict`."""
    from dacapo_hydra.inference.options import DTYPES

    made = parser(
        "dacapo-predict",
        "Predict a zarr volume blockwise with a trained model, into OME-NGFF zarr "
        "(<output>/<prediction-dataset>/s0). Resumable: rerun the same command after a kill "
        "(the same model, input and parameters; --overwrite starts afresh).",
        EXAMPLES,
    )
    model_arguments(made)
    prediction_arguments(made, DTYPES)
    made.add_argument("--output", required=True, metavar="CONTAINER", help="output container")
    made.add_argument(
        "--prediction-dataset", default="prediction", help="the prediction's group in --output"
    )
    made.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything and print the block plan, shapes, output and an estimated "
        "time; write nothing",
    )
    return made


def predict_main(argv: list[str] | None = None) -> None:
    """`dacapo-predict`: blockwise prediction of a zarr volume with a trained model.

    Example:
        `dacapo-predict --run-id <run id> --input data/volume.zarr raw/s0 --output out.zarr`

    """
    args = predict_parser().parse_args(argv)
    configure_logging(args.verbose)

    def command() -> None:
        from dacapo_hydra.inference.predict import predict

        one_model(args)
        where = execution(args)
        container, dataset = args.output, args.prediction_dataset
        check_writable(container)
        checkpoint = str(model_checkpoint(args))
        options = prediction_options(args)
        if args.dry_run:
            from dacapo_hydra.cli.dry_run import describe_prediction
            from dacapo_hydra.inference.predict import plan_prediction

            job = plan_prediction(
                checkpoint, args.input[0], args.input[1], container, dataset, options=options
            )
            for line in describe_prediction(job, where.workers):
                print(f"dacapo-predict: dry run: {line}")
            return
        result = predict(
            checkpoint,
            args.input[0],
            args.input[1],
            container,
            dataset,
            options=options,
            execution=where,
        )
        print(
            f"dacapo-predict: wrote {result.container}/{result.dataset}/s0 ({result.roi}, voxel "
            f"size {result.voxel_size} nm): {result.blocks_done_now} of {result.blocks} blocks in "
            f"{result.seconds:.1f}s, {result.voxels_per_s:.3g} voxels/s"
        )

    guarded_blocks("dacapo-predict", command, args.output)
