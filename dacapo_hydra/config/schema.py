"""Registers every schema in Hydra's ConfigStore.

The top-level :class:`~dacapo_hydra.config.run.Config` is the schema of
`conf/config.yaml`; each group option's YAML starts from its own schema
(`/schema/<group>/<kind>`), so a typo or a value of the wrong type fails at
composition, naming the key. Fields whose value may be a number or a per-axis
list (shapes, factors) are typed `Any` and checked by the room that builds them.
Each group's schemas live in their own module, listed in `SCHEMAS`.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from dacapo_hydra.config import architecture, datasplit, plan, task, trainer
from dacapo_hydra.config.run import Config
from dacapo_hydra.config.unique import register_unique_resolver
from dacapo_hydra.config.user_dir import register_user_config_resolver

GROUP_SCHEMAS = {
    "datasplit": datasplit.SCHEMAS,
    "architecture": architecture.SCHEMAS,
    "task": task.SCHEMAS,
    "trainer": trainer.SCHEMAS,
    "plan": plan.SCHEMAS,
}


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore and register our resolvers (idempotent)."""
    register_user_config_resolver()
    register_unique_resolver()
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, schemas in GROUP_SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=node)
