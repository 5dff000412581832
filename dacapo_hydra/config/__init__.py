"""Typed config schemas, registered in Hydra's ConfigStore."""

from __future__ import annotations

from dacapo_hydra.config.schema import register_configs

__all__ = ["register_configs"]
