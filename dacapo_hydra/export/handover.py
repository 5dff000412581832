"""A model in memory, handed to Dask workers as a checkpoint they load.

Workers of a Dask cluster are other processes: a module object cannot travel to them
(pickling a network with its task is fragile and, for a scheduler elsewhere,
pointless), but a checkpoint can. The API's :func:`~dacapo_hydra.api.predict` gives
them, in this order:

1. the checkpoint the module was loaded from (:func:`~dacapo_hydra.api.load_model`
   remembers it with :func:`remember`), if the module's weights are still those of
   that file;
2. for a LocalCluster (workers on this machine), a checkpoint of the module's
   weights and stored config written to a temporary folder for the call;
3. for a scheduler elsewhere, nothing: the call is refused in one line before any
   worker starts, naming what to pass instead.
"""

from __future__ import annotations

import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dacapo_hydra.inference.options import Execution, PredictOptions
    from dacapo_hydra.model.trained import TrainedModel


@dataclass(frozen=True)
class Origin:
    """Where a loaded module came from.

    Attributes:
        checkpoint: the checkpoint file, absolute.
        trusted: whether it was loaded with `trust_checkpoint`.

    """

    checkpoint: Path
    trusted: bool


_ORIGINS: weakref.WeakKeyDictionary[Any, Origin] = weakref.WeakKeyDictionary()


def remember(module: TrainedModel, checkpoint: str | Path, trusted: bool) -> TrainedModel:
    """Record the checkpoint `module` was loaded from; returns the module."""
    _ORIGINS[module] = Origin(Path(checkpoint).resolve(), trusted)
    return module


def origin(module: TrainedModel) -> Origin | None:
    """The checkpoint `module` was loaded from, if its weights are still that file's."""
    import torch

    found = _ORIGINS.get(module)
    if found is None or not found.checkpoint.is_file():
        return None
    stored = torch.load(found.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    live = module.state_dict()
    same = live.keys() == stored.keys() and all(
        torch.equal(live[k].detach().cpu(), stored[k]) for k in live
    )
    return found if same else None


def save_checkpoint(module: TrainedModel, path: Path) -> Path:
    """Write the module's weights and stored config as a checkpoint `load_model` reads."""
    import torch

    hparams = module.spec.hparams
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": hparams}, path)
    return path


@contextmanager
def for_workers(
    model: str | Path | TrainedModel,
    execution: Execution | None,
    options: PredictOptions | None,
) -> Iterator[tuple[str | Path | TrainedModel, PredictOptions | None]]:
    """The model (and options) to give a prediction whose blocks may run on Dask workers.

    A checkpoint path, or a module predicted in this process, passes unchanged; a
    module for workers becomes a checkpoint path (see the module's docstring), valid
    while the context is open.

    Raises:
        ValueError: a module without its own checkpoint for a remote scheduler.

    """
    from dacapo_hydra.inference.options import PredictOptions
    from dacapo_hydra.model.trained import TrainedModel

    if not isinstance(model, TrainedModel) or execution is None or execution.in_process:
        yield model, options
        return
    options = options or PredictOptions()
    found = origin(model)
    if found is not None:
        yield (
            found.checkpoint,
            replace(options, trust_checkpoint=options.trust_checkpoint or found.trusted),
        )
        return
    if execution.scheduler is not None:
        raise ValueError(
            f"a model in memory cannot go to the workers of {execution.scheduler}: give "
            "the checkpoint path instead (a file every worker can read)"
        )
    with tempfile.TemporaryDirectory(prefix="dacapo-model-") as folder:
        path = save_checkpoint(model, Path(folder) / "model.ckpt")
        # The config was built in this process already: the workers may build it too.
        yield path, replace(options, trust_checkpoint=True)
