"""A user config folder whose groups add to the packaged ones (`$DACAPO_CONFIG_DIR`).

Hydra's config search path takes `file://` folders; `conf/config.yaml` lists
`${dacapo_user_config:}` in `hydra.searchpath`, which this module resolves: the
folder named by `$DACAPO_CONFIG_DIR` when set, else the package itself (a
source with no group folders, so nothing is added and Hydra does not warn about a
missing folder). The packaged `conf/` comes first on the search path, so a user
file with the same group and name as a packaged one does not replace it: give
yours its own name (`datasplit/my_cells.yaml`).
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

USER_CONFIG_ENV = "DACAPO_CONFIG_DIR"
RESOLVER = "dacapo_user_config"
_EMPTY_SOURCE = "pkg://dacapo_hydra"


def user_config_dir() -> Path | None:
    """The folder named by `$DACAPO_CONFIG_DIR`, checked; None when the variable is unset.

    Raises:
        NotADirectoryError: the variable names no folder.

    Example:
        >>> user_config_dir() is None or user_config_dir().is_dir()
        True

    """
    value = os.environ.get(USER_CONFIG_ENV, "").strip()
    if not value:
        return None
    folder = Path(value).expanduser().resolve()
    if not folder.is_dir():
        raise NotADirectoryError(
            f"{USER_CONFIG_ENV}={value}: no such folder (expected a folder of config groups, "
            "e.g. datasplit/my_cells.yaml)"
        )
    return folder


def user_config_source() -> str:
    """The search-path entry for the user config folder (`file://...`, or an empty source)."""
    folder = user_config_dir()
    return f"file://{folder}" if folder is not None else _EMPTY_SOURCE


def register_user_config_resolver() -> None:
    """Register `${dacapo_user_config:}` (idempotent); checks `$DACAPO_CONFIG_DIR` at once."""
    user_config_dir()
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, user_config_source)
