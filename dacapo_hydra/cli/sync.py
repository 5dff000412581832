"""`dacapo-sync`: send what a run kept while its tracking server was away."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dacapo_hydra.cli.common import USER_ERRORS, configure_logging, guarded, parser

EXAMPLES = """\
  dacapo-sync --run-dir outputs/runs/<run>
  dacapo-sync --run-dir outputs/multirun/<time>/<job> --tracking-uri http://mlflowhost:5000
"""


def sync_parser() -> argparse.ArgumentParser:
    """The command line of `dacapo-sync`."""
    made = parser(
        "dacapo-sync",
        "Send a training run's MLflow writes that waited in its folder (<run>/mlflow_offline/: "
        "metrics, params, tags, checkpoints, the final status and the model) because the "
        "tracking server could not be reached, in the order they were made. Safe to run "
        "again: what was sent is removed from the queue.",
        EXAMPLES,
    )
    made.add_argument("--run-dir", required=True, help="the run's folder (its MLflow tag run_dir)")
    made.add_argument(
        "--tracking-uri",
        default=None,
        help="the tracking server, if it is reached at another address now (default: the one "
        "the run used)",
    )
    return made


def sync_main(argv: list[str] | None = None) -> None:
    """`dacapo-sync`: send what a run kept while its tracking server was away.

    Example:
        `dacapo-sync --run-dir outputs/runs/<run>`

    """
    args = sync_parser().parse_args(argv)
    configure_logging(args.verbose)

    def load(checkpoint: Path) -> Any:
        """The run's network, for its MLflow model (its own checkpoint: trusted)."""
        from dacapo_hydra.training.module import RunModule

        return RunModule.from_checkpoint(checkpoint, trust=True)

    def command() -> None:
        from dacapo_hydra.tracking.sync import sync_run_dir

        result = sync_run_dir(args.run_dir, load, args.tracking_uri)
        left = f"; {result.left} still wait: run it again" if result.left else ""
        print(
            f"dacapo-sync: sent {result.sent} writes of run {result.run_id} to "
            f"{result.tracking_uri}: MLflow status {result.status}{left}"
        )
        if result.left:
            raise SystemExit(1)

    guarded("dacapo-sync", command, (*USER_ERRORS, ConnectionError))
