"""`dacapo-datasplit`: a datasplit YAML from a CSV of zarr paths and class names."""

from __future__ import annotations

import argparse
import os
import uuid
from pathlib import Path

from dacapo_hydra.cli.common import check_writable, configure_logging, guarded, parser

EXAMPLES = """\
  dacapo-datasplit --input splits.csv --output ~/dacapo-configs/datasplit/mine.yaml
  dacapo-datasplit --input splits.csv --dims 2 --input-voxel-size 8 8 --output-voxel-size 8 8
      (prints the YAML; CSV rows: train|val, raw_container, raw_dataset, gt_container,
      gt_dataset, as DaCapo's DataSplitGenerator writes them, e.g. crop1/[mito&er])
  python train.py datasplit=mine      (with DACAPO_CONFIG_DIR=~/dacapo-configs)
"""


def datasplit_parser() -> argparse.ArgumentParser:
    """The command line of `dacapo-datasplit`."""
    made = parser(
        "dacapo-datasplit",
        "Write a datasplit YAML (an option of the datasplit group) from a CSV of zarr "
        "paths and class names; DaCapo's DataSplitGenerator CSV is read as is.",
        EXAMPLES,
    )
    made.add_argument(
        "--input",
        required=True,
        metavar="CSV",
        help="CSV: train|val, raw_container, raw_dataset, gt_container, gt_dataset",
    )
    made.add_argument("--output", metavar="YAML", help="YAML to write (default: print it)")
    made.add_argument("--dims", type=int, default=3, choices=(2, 3), help="spatial axes")
    made.add_argument("--input-voxel-size", type=float, nargs="+", help="raw scale level, nm")
    made.add_argument("--output-voxel-size", type=float, nargs="+", help="gt scale level, nm")
    made.add_argument(
        "--no-check", action="store_true", help="don't open the class datasets to see which exist"
    )
    return made


def datasplit_main(argv: list[str] | None = None) -> None:
    """`dacapo-datasplit`: a datasplit YAML from a CSV.

    Example:
        `dacapo-datasplit --input splits.csv --output conf/datasplit/mine.yaml`

    """
    args = datasplit_parser().parse_args(argv)
    configure_logging(args.verbose)

    def command() -> None:
        from dacapo_hydra.data.tools.csv_split import build_datasplit, read_rows, to_yaml

        if args.output:
            check_writable(args.output)
        split = build_datasplit(
            read_rows(args.input),
            args.dims,
            args.input_voxel_size,
            args.output_voxel_size,
            check=not args.no_check,
        )
        text = to_yaml(split, args.input)
        if not args.output:
            print(text, end="")
            return
        write_atomically(Path(args.output), text)
        print(
            f"dacapo-datasplit: wrote {args.output}: {len(split['train'])} train, "
            f"{len(split['validate'])} validate"
        )

    guarded("dacapo-datasplit", command)


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
