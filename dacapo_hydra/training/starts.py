"""Start points of a run: initial weights from a checkpoint or weights file.

A start is a path to a Lightning checkpoint (ours: its `state_dict` holds
`architecture.*` and `head.*`) or a plain state dict saved with `torch.save`: of
a whole run module, or of an architecture alone (keys without the
`architecture.` prefix). Tensors whose names and shapes match are loaded; the
rest keep their initialisation and are listed in the log (a new head for other
classes, say). Files are read with `torch.load(weights_only=True)`: no code runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# Prefixes a saved key may lack relative to the module's own names.
_PREFIXES = ("", "architecture.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint or weights file, by name.

    Raises:
        FileNotFoundError: if `path` is not a file.
        ValueError: if it can't be read safely or holds no tensors.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"start: checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(
            f"start: {str(path)!r} is not a checkpoint or state dict that "
            f"torch.load(weights_only=True) can read ({first})"
        ) from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(
            f"start: {str(path)!r} holds a {type(state).__name__}, not a state dict of tensors"
        )
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"start: {str(path)!r} holds no tensors")
    return tensors


def load_weights(module: torch.nn.Module, path: str | Path) -> list[str]:
    """Load the tensors whose names and shapes match from a checkpoint or weights file.

    Keys saved without the module's `architecture.` prefix (an architecture's own
    state dict) are matched too. The rest (a new head for other classes, say)
    keep their initialisation and are listed in the log.

    Returns:
        The names of the module's tensors that were not loaded.

    Raises:
        FileNotFoundError: if `path` is not a file.
        ValueError: if the file can't be read or none of its tensors fit.

    """
    state = read_state_dict(path)
    own = module.state_dict()
    matching: dict[str, torch.Tensor] = {}
    for prefix in _PREFIXES:
        candidate = {
            prefix + k: v
            for k, v in state.items()
            if prefix + k in own and own[prefix + k].shape == v.shape
        }
        if len(candidate) > len(matching):
            matching = candidate
    if not matching:
        raise ValueError(
            f"start: none of the {len(state)} tensors in {str(path)!r} fits this network "
            f"(theirs: {', '.join(list(state)[:3])}, ...; ours: {', '.join(list(own)[:3])}, ...)"
        )
    module.load_state_dict(matching, strict=False)
    skipped = sorted(set(own) - set(matching))
    log.info("start: loaded %d of %d tensors from %s", len(matching), len(own), path)
    if skipped:
        log.warning(
            "start: initialised %d tensors not (shape-)matched in %s: %s",
            len(skipped),
            path,
            ", ".join(skipped),
        )
    return skipped
