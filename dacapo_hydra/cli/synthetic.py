"""`dacapo-synthetic`: write a synthetic OME-Zarr container (EM-like cells or nuclei)."""

from __future__ import annotations

import argparse
import json

from dacapo_hydra.cli.common import check_writable, configure_logging, guarded, parser

EXAMPLES = """\
  dacapo-synthetic --output /tmp/synthetic.zarr
  dacapo-synthetic --output /tmp/cells_2d.zarr --dims 2 --shape 256 256 --voxel-size 4 4
  dacapo-synthetic --output /tmp/nuclei.zarr --kind nuclei --dims 3 --shape 32 160 160
  dacapo-synthetic --output /tmp/nuclei_aniso.zarr --kind nuclei --dims 3 --shape 32 192 192 \\
      --voxel-size 2000 400 400 --test
  dacapo-synthetic --output /tmp/ssem.zarr --shape 40 256 256 --voxel-size 40 4 4 \\
      --cell-diameter 320 --test
  napari /tmp/synthetic.zarr        (with napari-ome-zarr: raw with its labels)
"""


def synthetic_parser() -> argparse.ArgumentParser:
    """The command line of `dacapo-synthetic`."""
    from dacapo_hydra.data.tools.synthetic import KINDS

    made = parser(
        "dacapo-synthetic",
        "Write a synthetic OME-Zarr 0.5 container: train/raw and validate/raw, each with "
        "its label images in raw/labels/ (labels, mask; EM: organelles). An existing "
        "container made with the same parameters is kept.",
        EXAMPLES,
    )
    made.add_argument("--output", required=True, metavar="CONTAINER", help="zarr container")
    made.add_argument("--kind", default="em", choices=KINDS, help="EM-like cells or nuclei")
    made.add_argument("--dims", type=int, default=3, choices=(2, 3), help="spatial axes")
    made.add_argument(
        "--shape", type=int, nargs="+", help="voxels per axis (default: the kind's own)"
    )
    made.add_argument(
        "--voxel-size", type=float, nargs="+", help="nm per axis (default: 8 nm EM, 250 nuclei)"
    )
    made.add_argument("--offset", type=float, nargs="+", help="nm per axis (default: 0)")
    made.add_argument("--seed", type=int, default=0, help="the same seed, the same volumes")
    made.add_argument("--chunk", type=int, default=32, help="chunk edge, voxels")
    made.add_argument(
        "--cell-diameter",
        type=float,
        help="EM: typical cell diameter, nm (default: 22 voxels of the finest axis)",
    )
    made.add_argument(
        "--test", action="store_true", help="also write a held-out test/raw volume (scoring)"
    )
    return made


def synthetic_main(argv: list[str] | None = None) -> None:
    """`dacapo-synthetic`: write a synthetic OME-Zarr container.

    Example:
        `dacapo-synthetic --output /tmp/synthetic.zarr --dims 2`

    """
    args = synthetic_parser().parse_args(argv)
    configure_logging(args.verbose)

    def command() -> None:
        import zarr

        from dacapo_hydra.data.tools.synthetic import PARAMS_KEY, ensure_synthetic

        check_writable(args.output)
        out = ensure_synthetic(
            args.output,
            dims=args.dims,
            shape=args.shape,
            voxel_size=args.voxel_size,
            offset=args.offset,
            seed=args.seed,
            chunk=args.chunk,
            kind=args.kind,
            cell_diameter=args.cell_diameter,
            test=args.test,
        )
        params = zarr.open_group(str(out), mode="r").attrs[PARAMS_KEY]
        print(json.dumps({"path": str(out), **params}))

    guarded("dacapo-synthetic", command)
