"""Start points of a run: initial weights from a checkpoint or weights file."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def load_weights(module: torch.nn.Module, path: str | Path) -> list[str]:
    """Load the tensors whose names and shapes match from a checkpoint or weights file.

    The rest (a new head for other classes, say) keep their initialisation and are
    listed in the log. Loading uses `torch.load(weights_only=True)`.

    Returns:
        The names of the tensors that were not loaded.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"start: checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    own = module.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(matching))
    module.load_state_dict(matching, strict=False)
    log.info("start: loaded %d tensors from %s", len(matching), path)
    if skipped:
        log.warning(
            "start: initialised %d tensors not in %s: %s", len(skipped), path, ", ".join(skipped)
        )
    return skipped
