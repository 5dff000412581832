"""Command-line entry points, one module per command.

`dacapo-train` (and `python train.py`) in :mod:`~dacapo_hydra.cli.train`, `dacapo-plan`
(the data's fingerprint and a plan) in :mod:`~dacapo_hydra.cli.plan`,
`dacapo-predict`, `dacapo-apply`, `dacapo-validate` and `dacapo-export` in
:mod:`~dacapo_hydra.cli.predict`, :mod:`~dacapo_hydra.cli.apply`,
:mod:`~dacapo_hydra.cli.validate` and :mod:`~dacapo_hydra.cli.export`; the data
tools `dacapo-synthetic`, `dacapo-convert` and `dacapo-datasplit` in
:mod:`~dacapo_hydra.cli.synthetic`, :mod:`~dacapo_hydra.cli.convert` and
:mod:`~dacapo_hydra.cli.datasplit`; `dacapo-sync` (what a run kept while its tracking
server was away) in :mod:`~dacapo_hydra.cli.sync`; what they
share (the model and input arguments, the one error wrapper) in
:mod:`~dacapo_hydra.cli.common`. Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

from dacapo_hydra.cli.apply import apply_main
from dacapo_hydra.cli.convert import convert_main
from dacapo_hydra.cli.datasplit import datasplit_main
from dacapo_hydra.cli.export import export_main
from dacapo_hydra.cli.plan import plan_main
from dacapo_hydra.cli.predict import predict_main
from dacapo_hydra.cli.sync import sync_main
from dacapo_hydra.cli.synthetic import synthetic_main
from dacapo_hydra.cli.train import train_main
from dacapo_hydra.cli.validate import validate_main

__all__ = [
    "apply_main",
    "convert_main",
    "datasplit_main",
    "export_main",
    "plan_main",
    "predict_main",
    "synthetic_main",
    "sync_main",
    "train_main",
    "validate_main",
]
