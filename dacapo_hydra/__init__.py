"""dacapo-hydra: DaCapo's methods on Lightning, Hydra, MONAI, zarr and MLflow.

The Python API is imported on first use, so `import dacapo_hydra` stays cheap:

    >>> import dacapo_hydra
    >>> cfg = dacapo_hydra.compose(datasplit="synthetic_2d", overrides=["iterations=20"])
    >>> result = dacapo_hydra.train(cfg)  # doctest: +SKIP
    >>> dacapo_hydra.runs()[["run_name", "task", "best_score"]]  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "compose", "runs", "train"]

_API = ("compose", "runs", "train")


def __getattr__(name: str) -> object:
    if name in _API:
        from dacapo_hydra import api

        return getattr(api, name)
    raise AttributeError(f"module 'dacapo_hydra' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
