"""`dacapo-convert`: a TIFF stack (or a folder of section TIFFs) into OME-Zarr 0.5."""

from __future__ import annotations

import argparse
import json

from dacapo_hydra.cli.common import check_writable, configure_logging, guarded, parser

EXAMPLES = """\
  dacapo-convert --input stack.tif --output data.zarr --voxel-size 40 8 8
      (the image `raw`)
  dacapo-convert --input sections/ --output data.zarr --dataset raw --voxel-size 40 8 8 \\
      --offset 400 0 0 --levels 3
  dacapo-convert --input cells.tif --output data.zarr --labels --voxel-size 40 8 8
      (the label image raw/labels/labels of the container's image)
  dacapo-convert --input mito.tif --output data.zarr --labels --dataset mito --image raw \\
      --voxel-size 40 8 8
"""


def convert_parser() -> argparse.ArgumentParser:
    """The command line of `dacapo-convert`."""
    made = parser(
        "dacapo-convert",
        "Convert a multi-page TIFF, or a folder of one TIFF per section, into an OME-Zarr "
        "0.5 image; with --labels, into a label image of an image already in the container "
        "(<image>/labels/<dataset>), so viewers pair them.",
        EXAMPLES,
    )
    made.add_argument(
        "--input",
        required=True,
        metavar="TIFF",
        help="multi-page TIFF, or a folder of one TIFF per section (sorted by name)",
    )
    made.add_argument(
        "--output", required=True, metavar="CONTAINER", help="zarr container (created if missing)"
    )
    made.add_argument(
        "--dataset",
        help="the image's group (default: raw); with --labels the label image's name "
        "(default: labels)",
    )
    made.add_argument("--voxel-size", type=float, nargs="+", required=True, help="nm, z y x")
    made.add_argument("--offset", type=float, nargs="+", help="nm, z y x (default 0)")
    made.add_argument("--chunk", type=int, default=64, help="chunk edge, voxels")
    made.add_argument("--levels", type=int, default=1, help="scale levels (2x each)")
    made.add_argument(
        "--labels",
        action="store_true",
        help="integer annotations: a label image of --image, downsampled by picking",
    )
    made.add_argument(
        "--image", help="with --labels: the image they annotate (default: the container's only)"
    )
    return made


def convert_main(argv: list[str] | None = None) -> None:
    """`dacapo-convert`: a TIFF stack into OME-Zarr 0.5.

    Example:
        `dacapo-convert --input stack.tif --output data.zarr --voxel-size 40 8 8`

    """
    args = convert_parser().parse_args(argv)
    configure_logging(args.verbose)

    def command() -> None:
        from dacapo_hydra.data.tools.convert import convert

        if args.image and not args.labels:
            raise ValueError("--image names the image of --labels; give --labels too")
        check_writable(args.output)
        dataset = args.dataset or ("labels" if args.labels else "raw")
        group = convert(
            args.input,
            args.output,
            dataset,
            args.voxel_size,
            args.offset,
            args.chunk,
            args.levels,
            args.labels,
            args.image,
        )
        shapes = {name: list(a.shape) for name, a in group.arrays()}
        print(json.dumps({"container": args.output, "dataset": group.path, "levels": shapes}))

    guarded("dacapo-convert", command)
