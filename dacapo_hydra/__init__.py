"""dacapo-hydra: DaCapo's methods on Lightning, Hydra, MONAI, zarr and MLflow.

The verbs of the command line, for notebooks and scripts (:mod:`dacapo_hydra.api`),
imported on first use so `import dacapo_hydra` stays cheap:

    >>> import dacapo_hydra
    >>> cfg = dacapo_hydra.compose(datasplit="synthetic_2d", overrides=["iterations=20"])
    >>> cfg.choices.datasplit
    'synthetic_2d'
    >>> result = dacapo_hydra.train(cfg)  # doctest: +SKIP
    >>> dacapo_hydra.runs()[["run_name", "task", "best_score"]]  # doctest: +SKIP
    >>> model = dacapo_hydra.load_model(result.checkpoint)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from dacapo_hydra.api import (
        apply,
        compose,
        export_model,
        load_model,
        post_process,
        predict,
        runs,
        train,
        validate,
    )
    from dacapo_hydra.inference.options import (
        ApplyOptions,
        Execution,
        LabelsOptions,
        PredictOptions,
    )

_OPTIONS = ("ApplyOptions", "Execution", "LabelsOptions", "PredictOptions")

__all__ = [
    "ApplyOptions",
    "Execution",
    "LabelsOptions",
    "PredictOptions",
    "__version__",
    "apply",
    "compose",
    "export_model",
    "load_model",
    "post_process",
    "predict",
    "runs",
    "train",
    "validate",
]


def __getattr__(name: str) -> object:
    if name in _OPTIONS:
        from dacapo_hydra.inference import options

        return getattr(options, name)
    if name in __all__:
        from dacapo_hydra import api

        return getattr(api, name)
    raise AttributeError(f"module 'dacapo_hydra' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
