"""dacapo-hydra: DaCapo's methods on Lightning, Hydra, MONAI, zarr and MLflow."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "compose", "train"]


def __getattr__(name: str) -> object:
    # The Python API is imported lazily so `import dacapo_hydra` stays cheap.
    if name in ("compose", "train"):
        from dacapo_hydra import api

        return getattr(api, name)
    raise AttributeError(name)
