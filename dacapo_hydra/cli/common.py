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
import dataclasses
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Collection, Mapping
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
    """Defaults after each option's help (unless it gives its own); the examples as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


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


# Annotations of option fields (as written: the options module postpones them) and how
# the command line reads them; a ROI and GPUs are text, parsed by PARSED.
KINDS: dict[str, dict[str, Any]] = {
    "bool": {"action": "store_true"},
    "int": {"type": int},
    "int | None": {"type": int},
    "float": {"type": float},
    "float | None": {"type": float},
    "str": {},
    "str | None": {},
    "Roi | None": {"metavar": "Z0:Z1,Y0:Y1,X0:X1"},
    "tuple[int, ...] | None": {"nargs": "+", "type": int},
    "tuple[float, ...] | None": {"nargs": "+", "type": float},
    "tuple[float, float]": {"nargs": 2, "type": float},
    "tuple[str, ...] | None": {},
}


def _parsers() -> dict[str, Callable[[Any], Any]]:
    from dacapo_hydra.devices import parse_devices

    return {"roi": parse_roi, "devices": parse_devices}


def _option_fields(
    options: type, skip: Collection[str], flags: Mapping[str, str]
) -> list[tuple[dataclasses.Field, str]]:
    """The fields of `options` on the command line, each with its flag (without `--`)."""
    out = []
    for found in dataclasses.fields(options):
        flag = flags.get(found.name, found.metadata.get("flag", found.name.replace("_", "-")))
        if found.name not in skip and "help" in found.metadata and flag is not None:
            out.append((found, flag))
    return out


def option_arguments(
    parser: argparse.ArgumentParser,
    options: type,
    *,
    skip: Collection[str] = (),
    flags: Mapping[str, str] | None = None,
    **settings: dict[str, Any],
) -> None:
    """One `--flag` per field of the options dataclass `options`, its default and help the field's.

    Args:
        parser: the command's parser.
        options: a dataclass of :mod:`dacapo_hydra.inference.options`.
        skip: fields the command sets otherwise.
        flags: a flag per field where the command names it otherwise.
        **settings: per field, argparse settings replacing the field's (`choices`).

    """
    for found, flag in _option_fields(options, skip, flags or {}):
        if found.type not in KINDS:
            raise TypeError(f"{options.__name__}.{found.name}: no command line for {found.type}")
        given = {k: found.metadata[k] for k in ("metavar", "choices") if k in found.metadata}
        parser.add_argument(
            f"--{flag}",
            dest=flag.replace("-", "_"),
            default=found.default,
            help=found.metadata["help"],
            **{**KINDS[found.type], **given, **settings.get(found.name, {})},
        )


def option_values(
    args: argparse.Namespace,
    options: type,
    *,
    skip: Collection[str] = (),
    flags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The fields of `options` that :func:`option_arguments` put on the command line, parsed."""
    parsers = _parsers()
    values = {}
    for found, flag in _option_fields(options, skip, flags or {}):
        value = getattr(args, flag.replace("-", "_"))
        parse = parsers.get(found.name)
        values[found.name] = parse(value) if parse is not None else value
    return values


def prediction_arguments(
    parser: argparse.ArgumentParser, dtypes: tuple[str, ...], skip: Collection[str] = ()
) -> None:
    """Arguments of blockwise prediction shared by dacapo-predict and dacapo-apply.

    `--input`, then :class:`~dacapo_hydra.inference.options.Execution`'s and
    :class:`~dacapo_hydra.inference.options.PredictOptions`' fields but `skip` (and
    `trust_checkpoint`, which :func:`model_arguments` gives).
    """
    from dacapo_hydra.inference.options import Execution, PredictOptions

    parser.add_argument(
        "--input",
        nargs=2,
        required=True,
        metavar=("CONTAINER", "DATASET"),
        help="the raw volume: a zarr container and the array (or multiscale group) in it",
    )
    option_arguments(parser, Execution)
    skip = ("trust_checkpoint", *skip)
    option_arguments(parser, PredictOptions, skip=skip, dtype={"choices": dtypes})


def prediction_options(args: argparse.Namespace, skip: Collection[str] = ()) -> PredictOptions:
    """The prediction's options from the arguments of :func:`prediction_arguments`."""
    from dacapo_hydra.inference.options import PredictOptions

    values = option_values(args, PredictOptions, skip=("trust_checkpoint", *skip))
    return PredictOptions(trust_checkpoint=args.trust_checkpoint, **values)


def execution(args: argparse.Namespace) -> Execution:
    """Where the blocks run, from `--workers`, `--devices` and `--scheduler`, checked."""
    from dacapo_hydra.inference.options import Execution

    return Execution(**option_values(args, Execution))
