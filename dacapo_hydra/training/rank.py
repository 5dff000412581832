"""A DDP rank that :func:`~dacapo_hydra.training.process.launch.processes` started.

`python -m dacapo_hydra.training.rank <config.yaml>` trains the composed config in
the spec file as one rank of the run (Lightning's `LOCAL_RANK` and friends are in
its environment). The entry point imports the train verb; nothing imports this
module, so training's modules form no import cycle.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from dacapo_hydra.errors import ConfigError
from dacapo_hydra.training.process.distributed import RankZeroFailed
from dacapo_hydra.training.run import train


def main(argv: Sequence[str] | None = None) -> None:
    """A rank :func:`~dacapo_hydra.training.process.launch.processes` started: train the config.

    Errors rank 0 reports too (bad input, rank 0's own failure) end it quietly with
    code 2 and 1; anything else with its traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m dacapo_hydra.training.rank <config.yaml>", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=logging.WARNING, format="[rank %(process)d] %(message)s")
    cfg = OmegaConf.create(Path(args[0]).read_text())
    try:
        train(cfg)
    except ConfigError:
        sys.exit(2)
    except RankZeroFailed:
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C reaches every rank; rank 0 reports it
        sys.exit(130)


if __name__ == "__main__":
    main()
