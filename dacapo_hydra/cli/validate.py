"""`dacapo-validate`: validate a model on its datasplit's validation datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

from dacapo_hydra.cli.common import (
    configure_logging,
    guarded,
    model_arguments,
    model_checkpoint,
    one_model,
    parser,
)

EXAMPLES = """\
  dacapo-validate --run-id <run id>
  dacapo-validate --run-id <run id> --checkpoint-name last --scores dice voi
  dacapo-validate --checkpoint outputs/runs/<run>/checkpoints/last.ckpt
  dacapo-validate <run id or checkpoint path>      (the older positional form)
"""

# Columns of the table after the criterion (those the task has).
SUMMARY_SCORES = (
    "dice",
    "f1",
    "detection_f1",
    "mean_average_precision",
    "adapted_rand_error",
    "voi",
    "hausdorff_95",
)


def validate_parser() -> argparse.ArgumentParser:
    """The command line of `dacapo-validate`."""
    made = parser(
        "dacapo-validate",
        "Validate a checkpoint (or an MLflow run's) on whole validation volumes of the "
        "datasplit it was trained with, and print a score table.",
        EXAMPLES,
    )
    made.add_argument("model", nargs="?", help="(older form) a checkpoint path or an MLflow run id")
    model_arguments(made)
    made.add_argument(
        "--scores", nargs="+", help="scores to show (default: the task's criterion and a few more)"
    )
    return made


def validate_main(argv: list[str] | None = None) -> None:
    """`dacapo-validate`: validate a model on its datasplit's validation datasets.

    Example:
        `dacapo-validate --run-id <run id> --checkpoint-name last`

    """
    args = validate_parser().parse_args(argv)
    configure_logging(args.verbose)

    def command() -> None:
        one_model(args, args.model)
        if args.model:
            path = Path(args.model)
            if path.is_file() or path.suffix == ".ckpt" or len(path.parts) > 1:
                args.checkpoint = args.model
            else:
                args.run_id = args.model
        label = f"run {args.run_id}, {args.checkpoint_name} checkpoint" if args.run_id else None
        validate(model_checkpoint(args), args.scores, args.trust_checkpoint, label)

    guarded("dacapo-validate", command)


def validate(
    path: Path, scores: list[str] | None, trust_checkpoint: bool = False, label: str | None = None
) -> None:
    """Validate the checkpoint at `path` (:func:`dacapo_hydra.api.validate`); print its table.

    `label` names the model in the table's first line instead of the path (a run's
    checkpoint is read from a temporary download).
    """
    from dacapo_hydra.api import load_model
    from dacapo_hydra.api import validate as validate_model
    from dacapo_hydra.training.validation import params_key

    module = load_model(path, trust_checkpoint=trust_checkpoint)
    result = validate_model(module)
    rows, best = result.rows, result.best
    criterion = module.task.criterion
    names = scores or [criterion] + [n for n in SUMMARY_SCORES if n != criterion]
    names = [n for n in names if any(n in r.scores for r in rows)]
    header = ["dataset", "params", *names]
    table = [
        [r.dataset, params_key(r.params), *(f"{r.scores.get(n, float('nan')):.4g}" for n in names)]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table, strict=True)]
    print(label or f"checkpoint {path}")
    for line in [header, *table]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)))
    if best is not None:
        print(f"best {criterion}: {best.score:.4g} with {best.params}")
