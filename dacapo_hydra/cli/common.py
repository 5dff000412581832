"""What every command shares: its parser, the model and input arguments, the error wrapper.

One style across the commands that use a trained model:

- the model: `--run-id ID` (an MLflow run; `--checkpoint-name`, default its best
  checkpoint; `--tracking-uri`, default as :func:`dacapo_hydra.tracking.find_store`)
  or `--checkpoint PATH`;
- `--trust-checkpoint`: build whatever the checkpoint's stored config names; without
  it only the allow-list of :mod:`dacapo_hydra.trust` (a checkpoint is data);
- the input: `--input CONTAINER DATASET`;
- the output: `--output CONTAINER` and `--<kind>-dataset NAME` per written array;
- `--help` with examples and defaults, `--version`;
- quiet by default: the command's own lines and warnings; `-v` adds the libraries'
  INFO logs (MLflow's database setup, Dask's cluster), `-vv` debug logs, and MLflow's
  artifact download bars (:func:`configure_logging`);
- bad input ends the command with one line on stderr and exit status 2
  (:func:`guarded`), an output that cannot be written included
  (:func:`check_writable`).

Nothing heavy (torch, Lightning, MLflow, MONAI, zarr) is imported until a
command runs, so `--help`, `--version` and shell completion answer at once; the
commands' modules import even the light ones they need only to run (options,
devices) when they run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from dacapo_hydra import __version__
from dacapo_hydra.errors import ConfigError

if TYPE_CHECKING:
    from dacapo_hydra.data.roi import Roi
    from dacapo_hydra.inference.options import Execution, PredictOptions

STORE_HELP = (
    "MLflow store of --run-id (default: $MLFLOW_TRACKING_URI, else $DACAPO_OUTPUT_DIR/mlflow.db, "
    "else ./outputs/mlflow.db if it exists)"
)
# Bad input: ConfigError is a ValueError; a missing folder a FileNotFoundError or
# NotADirectoryError.
USER_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    KeyError,
    FileNotFoundError,
    NotADirectoryError,
)

T = TypeVar("T")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each option's help; the examples epilog as written."""


def parser(prog: str, description: str, examples: str) -> argparse.ArgumentParser:
    """A command's parser: its description, examples after the options, and `--version`."""
    made = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=HelpFormatter,
    )
    made.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__} (dacapo-hydra)"
    )
    made.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show the libraries' logs too (-v INFO, -vv DEBUG) and download bars",
    )
    return made


def configure_logging(verbose: int = 0) -> None:
    """Quiet by default: the command's own lines (printed) and warnings from anyone.

    With `verbose` 1, everything logs at INFO (dacapo-hydra's steps, MLflow's and
    Alembic's database set-up, Dask's cluster) and MLflow shows its artifact download
    bars; with 2, DEBUG. Dask's worker processes read the level from the environment
    they inherit.
    """
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    for name in ("alembic", "mlflow", "distributed", "dacapo_hydra"):
        logging.getLogger(name).setLevel(level)
    if not verbose:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


def check_writable(path: str | Path, flag: str = "--output") -> Path:
    """`path` can be created or written: a file can be made in its nearest existing folder.

    The folder is probed with a temporary file (removed at once): permissions alone do
    not tell (root, read-only file systems, quotas).

    Raises:
        ValueError: naming the path and the folder that refuses it.

    Example:
        >>> check_writable("/sys/out.zarr")
        Traceback (most recent call last):
        ...
        ValueError: --output /sys/out.zarr: cannot write into /sys (Permission denied)

    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{flag} {path}: {folder} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".dacapo-probe-", dir=folder)
    except OSError as err:
        raise ValueError(
            f"{flag} {path}: cannot write into {folder} ({err.strerror or err})"
        ) from None
    os.close(handle)
    os.unlink(probe)
    return path


def fail(prog: str, err: BaseException) -> NoReturn:
    """End the program with `<prog>: error: <message>` on stderr and exit status 2."""
    print(f"{prog}: error: {err.args[0] if err.args else err}", file=sys.stderr)
    sys.exit(2)


def guarded(
    prog: str, command: Callable[[], T], errors: tuple[type[Exception], ...] = USER_ERRORS
) -> T:
    """Run `command`; bad input (`errors`) ends the program with one line and exit status 2.

    Example:
        >>> guarded("dacapo-x", lambda: 42)
        42
        >>> guarded("dacapo-x", lambda: int("four"))
        Traceback (most recent call last):
        ...
        SystemExit: 2

    """
    try:
        return command()
    except errors as err:
        fail(prog, err)
    except OSError as err:  # a full disk, a folder that refuses writes: one line too
        where = f": {err.filename}" if err.filename else ""
        fail(prog, OSError(f"{err.strerror or err}{where}"))


def guarded_blocks(prog: str, command: Callable[[], T], output: str | Path) -> T:
    """:func:`guarded` for a blockwise command writing `output`: stop signals and a full disk.

    SIGTERM, SIGINT, SIGUSR1 or SIGUSR2 (to the whole job, as a cluster sends them) end
    it with one line and exit status 128 + the signal's number, the finished blocks
    kept; a full output disk with one line naming the output and what was free
    (:mod:`dacapo_hydra.inference.signals`).
    """
    from dacapo_hydra.inference.signals import JobStopped, disk_full_line, stop_signals

    def stoppable() -> T:
        try:
            with stop_signals():
                return command()
        except OSError as err:
            line = disk_full_line(err, output)
            if line is None:
                raise
            print(f"{prog}: error: {line}", file=sys.stderr)
            sys.exit(1)

    try:
        return guarded(prog, stoppable)
    except JobStopped as stop:
        print(
            f"{prog}: stopped by {stop.signal_name}: the blocks done are kept in {output}: "
            "run the same command again to do the rest",
            file=sys.stderr,
        )
        sys.exit(stop.exit_status)


def model_arguments(parser: argparse.ArgumentParser, what: str = "the model") -> None:
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


def one_model(args: argparse.Namespace, legacy: str | None = None) -> None:
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


def parse_roi(text: str | None) -> Roi | None:
    """`--roi z0:z1,y0:y1,x0:x1` (nm) as a world ROI; None when not given."""
    from dacapo_hydra.data.roi import Roi

    if text is None:
        return None
    try:
        pairs = [tuple(float(v) for v in part.split(":")) for part in text.split(",")]
        return Roi(tuple(a for a, _ in pairs), tuple(b - a for a, b in pairs))
    except ValueError:
        raise ConfigError(
            f"--roi {text!r}: expected begin:end per axis in nm, e.g. 0:800,0:800,0:800"
        ) from None


def prediction_arguments(parser: argparse.ArgumentParser, dtypes: tuple[str, ...]) -> None:
    """Arguments of blockwise prediction shared by dacapo-predict and dacapo-apply."""
    parser.add_argument(
        "--input",
        nargs=2,
        required=True,
        metavar=("CONTAINER", "DATASET"),
        help="the raw volume: a zarr container and the array (or multiscale group) in it",
    )
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
        "--window-batch",
        type=int,
        default=2,
        help="'same'-padding networks: windows per forward pass (MONAI's sw_batch_size)",
    )
    parser.add_argument(
        "--levels",
        type=int,
        default=1,
        help="scale levels of the outputs, s0 included: each further level halves every "
        "axis (predictions averaged, labels by their most frequent id); default 1",
    )
    parser.add_argument(
        "--input-voxel-size", nargs="+", type=float, help="where the input has no metadata"
    )
    parser.add_argument(
        "--input-offset", nargs="+", type=float, help="where the input has no metadata"
    )


def prediction_options(args: argparse.Namespace, **extra: Any) -> PredictOptions:
    """The prediction's options from the arguments of :func:`prediction_arguments` (+ `extra`)."""
    from dacapo_hydra.inference.options import PredictOptions

    return PredictOptions(
        roi=parse_roi(args.roi),
        dtype=args.dtype,
        mirror=args.mirror,
        input_shape=args.input_shape,
        overlap=args.overlap,
        block_shape=args.block_shape,
        window_batch=args.window_batch,
        raw_voxel_size=args.input_voxel_size,
        raw_offset=args.input_offset,
        trust_checkpoint=args.trust_checkpoint,
        overwrite=args.overwrite,
        levels=args.levels,
        **extra,
    )


def execution(args: argparse.Namespace) -> Execution:
    """Where the blocks run, from `--workers`, `--devices` and `--scheduler`, checked."""
    from dacapo_hydra.devices import parse_devices
    from dacapo_hydra.inference.options import Execution

    devices = parse_devices(args.devices)
    if devices and args.scheduler:
        raise ConfigError(
            f"--devices {args.devices} starts a LocalCluster; with --scheduler each worker uses "
            "the GPU its job was given (dask-jobqueue: --gres=gpu:1, processes=1)"
        )
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: expected at least 1")
    workers = args.workers or (len(devices) if devices else 1)
    return Execution(workers=workers, scheduler=args.scheduler, devices=devices)
