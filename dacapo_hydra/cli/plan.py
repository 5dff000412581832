"""`dacapo-plan`: the data's fingerprint and the plan, one table; written as an experiment."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from dacapo_hydra.cli.common import configure_logging, guarded, parser

EXAMPLES = """\
  dacapo-plan datasplit=mine task=affinities
      print the fingerprint and the plan (each value with its reason) and write
      $DACAPO_CONFIG_DIR/experiment/plan_mine_affinities.yaml
  python train.py experiment=plan_mine_affinities        train with it (edit it first, or not)
  python train.py datasplit=mine task=affinities         the same plan, made at the start
  dacapo-plan datasplit=mine task=affinities --gpu-memory 80 --name mine_h100
  dacapo-plan datasplit=mine plan.architecture=monai_unet --dry-run --json
"""
NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def plan_parser() -> argparse.ArgumentParser:
    """The command line of `dacapo-plan`."""
    made = parser(
        "dacapo-plan",
        "Measure the training data's fingerprint (voxel size, object size, extent, "
        "intensities, on a bounded sample) and plan what a run leaves out: network levels "
        "and kernels, crop and batch for this machine's memory, augmentations, validation "
        "and stopping. Prints one table (each value with its reason) and writes it as a "
        "Hydra experiment into your config folder.",
        EXAMPLES,
    )
    made.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides, as for dacapo-train"
    )
    made.add_argument("--name", help="the experiment's name (default: plan_<datasplit>_<task>)")
    made.add_argument(
        "--config-dir",
        metavar="DIR",
        help="your config folder, written to <DIR>/experiment/ (default: $DACAPO_CONFIG_DIR)",
    )
    made.add_argument(
        "--gpu-memory",
        type=float,
        metavar="GIB",
        help="plan for a GPU of this memory (0: a CPU; default: this machine)",
    )
    made.add_argument("--dry-run", action="store_true", help="print only; write nothing")
    made.add_argument("--json", action="store_true", help="print the plan as JSON")
    return made


def plan_main(argv: list[str] | None = None) -> None:
    """`dacapo-plan`: print the fingerprint and the plan; write `experiment/<name>.yaml`.

    Example:
        `dacapo-plan datasplit=mine task=affinities`

    """
    args = plan_parser().parse_intermixed_args(argv)  # overrides before or after flags
    configure_logging(args.verbose)

    def command() -> None:
        from dacapo_hydra.api import compose
        from dacapo_hydra.planning.experiment import plan_for, write_experiment
        from dacapo_hydra.planning.table import plan_table

        if args.gpu_memory is not None and args.gpu_memory < 0:
            raise ValueError(f"--gpu-memory: expected GiB >= 0, got {args.gpu_memory}")
        folder = _config_folder(args)  # where it will write, before the data is measured
        cfg = compose(overrides=args.overrides)
        gpu = None if args.gpu_memory is None else int(args.gpu_memory * 2**30)
        plan = plan_for(cfg, gpu)
        name, text, overridden = _experiment(args, cfg, plan)
        if args.json:
            print(json.dumps({**plan.to_dict(), "overridden": overridden}, indent=1))
        else:
            print(plan_table(plan))
        if folder is None:  # a dry run
            return
        written = write_experiment(text, folder.expanduser(), name)
        print(f"dacapo-plan: wrote {written}; train with: python train.py experiment={name}")

    guarded("dacapo-plan", command)


def _config_folder(args: argparse.Namespace) -> Path | None:
    """The config folder the experiment goes to; None for a dry run.

    Raises:
        ValueError: not a dry run, and neither `--config-dir` nor `$DACAPO_CONFIG_DIR`.

    """
    from dacapo_hydra.config.user_dir import user_config_dir

    if args.dry_run:
        return None
    folder = Path(args.config_dir) if args.config_dir else user_config_dir()
    if folder is None:
        raise ValueError(
            "no config folder: set DACAPO_CONFIG_DIR or give --config-dir (or --dry-run)"
        )
    return folder


def _experiment(args: argparse.Namespace, cfg: Any, plan: Any) -> tuple[str, str, list[str]]:
    """The experiment's name and text, and the plan's keys the overrides set (left out of it)."""
    from omegaconf import OmegaConf

    from dacapo_hydra.planning.experiment import (
        CONFIG_GROUPS,
        experiment_text,
        override_keys,
        split_overrides,
    )

    choices = {g: str(o).rstrip("*") for g, o in cfg.choices.items() if o}
    name = args.name or f"plan_{choices.get('datasplit')}_{choices.get('task')}"
    if not NAME.match(name):
        raise ValueError(f"--name: expected letters, digits, '_', '-' or '.', got {name!r}")
    _, overridden = split_overrides(plan, args.overrides)
    plan.values = [v for v in plan.values if v.key not in overridden]
    groups = {g: choices[g] for g in ("datasplit", "task", "trainer") if g in choices}
    given = {
        key: OmegaConf.to_object(found) if OmegaConf.is_config(found) else found
        for key in override_keys(args.overrides)
        if key.split("/")[0] not in CONFIG_GROUPS and not key.startswith("hydra")
        for found in [OmegaConf.select(cfg, key)]
    }
    return name, experiment_text(plan, groups, name, given), overridden
