"""`${dacapo_unique:}`: what tells apart run folders started in the same second.

Hydra names a run's folder from `hydra.run.dir` (`conf/config.yaml`):
`<paths.output_dir>/runs/<time>_${dacapo_unique:}`, and a sweep's from
`hydra.sweep.dir`. The time has one-second resolution; the suffix is 8 random hex
digits drawn once per process (a cached resolver: a sweep's jobs share their
sweep's folder). The Python API names its folders with the same suffix
(:func:`~dacapo_hydra.training.process.run_dir.new_run_dir`).
"""

from __future__ import annotations

import secrets

from omegaconf import OmegaConf

RESOLVER = "dacapo_unique"


def unique_suffix() -> str:
    """8 random hex digits: what tells apart runs started in the same second.

    Example:
        >>> len(unique_suffix()), unique_suffix() != unique_suffix()
        (8, True)

    """
    return secrets.token_hex(4)


def register_unique_resolver() -> None:
    """Register `${dacapo_unique:}` (idempotent), cached: one value per config."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, unique_suffix, use_cache=True)
