"""`dacapo-export`: export a trained model to a folder that applies without training code."""

from __future__ import annotations

import argparse

from dacapo_hydra.cli.common import (
    check_writable,
    configure_logging,
    guarded,
    model_arguments,
    model_checkpoint,
    one_model,
    parser,
)

EXAMPLES = """\
  dacapo-export --run-id <run id> --output exported_model/
  dacapo-export --run-id <run id> --output cells_model/ --bioimageio --name "EM cells (affinities)"
      (a bioimage.io package, tested by bioimageio.core; `bioimageio test cells_model/rdf.yaml`)
  dacapo-export --checkpoint outputs/runs/<run>/checkpoints/best_dice.ckpt --output exported/ \\
      --input-shape 132 132 132
"""


def export_parser() -> argparse.ArgumentParser:
    """The command line of `dacapo-export`."""
    made = parser(
        "dacapo-export",
        "Export a trained model to a folder that applies without the training code: "
        "torch.export and TorchScript programs, shapes, voxel sizes, normalisation, apply.py.",
        EXAMPLES,
    )
    model_arguments(made)
    made.add_argument("--output", required=True, metavar="FOLDER", help="the folder to write")
    made.add_argument(
        "--input-shape",
        type=int,
        nargs="+",
        default=None,
        help="spatial input voxels (default: the architecture's eval input shape)",
    )
    made.add_argument("--overwrite", action="store_true", help="replace the folder")
    made.add_argument(
        "--bioimageio",
        action="store_true",
        help="also write a bioimage.io package (rdf.yaml), tested by bioimageio.core before "
        "the folder is kept (pip install 'dacapo-hydra[bioimageio]')",
    )
    made.add_argument(
        "--name",
        help="the model's name (bioimage.io: 5 to 64 letters, digits, spaces, _+-()); "
        "default: from the run's name or its group choices",
    )
    made.add_argument("--author", action="append", help="author name (bioimage.io)")
    return made


def export_main(argv: list[str] | None = None) -> None:
    """`dacapo-export`: export a trained model to a folder that applies without training code.

    Example:
        `dacapo-export --run-id <run id> --output exported_model/`

    """
    args = export_parser().parse_args(argv)
    configure_logging(args.verbose)

    def command() -> None:
        from dacapo_hydra.export.model import export_model

        one_model(args)
        check_writable(args.output)
        exported = export_model(
            model_checkpoint(args),
            args.output,
            args.input_shape,
            args.overwrite,
            bioimageio=args.bioimageio,
            authors=args.author,
            trust_checkpoint=args.trust_checkpoint,
            name=args.name,
        )
        print(f"dacapo-export: wrote {exported.folder}")

    guarded("dacapo-export", command)
