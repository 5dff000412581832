"""load: a checkpoint to a TrainedModel, cached per process, its weights' names checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dacapo_hydra.model.load import load, load_cached
from dacapo_hydra.model.trained import TrainedModel
from dacapo_hydra.training.module import RunModule
from tests.conftest import perturbed


def test_the_cache_loads_once_per_file_and_trust(trained_2d: str, tmp_path: Path) -> None:
    copy = tmp_path / "copy.ckpt"
    copy.write_bytes(Path(trained_2d).read_bytes())
    first = load_cached(copy)
    assert isinstance(first, TrainedModel) and not first.training
    assert load_cached(str(copy)) is first
    assert load_cached(copy, trust=True) is not first
    perturbed(copy, copy)  # rewritten in place: loaded again
    again = load_cached(copy)
    assert again is not first
    assert not torch.equal(again.head.weight.cpu(), first.head.weight.cpu())


def test_a_fresh_load_is_not_the_cached_one(trained_2d: str) -> None:
    assert load(trained_2d) is not load(trained_2d)


def test_the_lightning_module_names_weights_as_the_trained_model(trained_2d: str) -> None:
    module = RunModule.from_checkpoint(trained_2d)
    model = load(trained_2d)
    names = list(model.state_dict())
    assert names and all(n.startswith(("architecture.", "head.")) for n in names)
    assert list(module.state_dict()) == names
    stored = torch.load(trained_2d, map_location="cpu", weights_only=True)["state_dict"]
    assert list(stored) == names
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(module.state_dict()[name], tensor)
    # and reads them back (what Lightning does on resume)
    nudged = {k: v + 1 if v.is_floating_point() else v for k, v in stored.items()}
    module.load_state_dict(nudged)
    torch.testing.assert_close(module.model.head.weight, nudged["head.weight"])


def test_the_trained_model_predicts_what_the_module_did(trained_2d: str) -> None:
    module = RunModule.from_checkpoint(trained_2d)
    model = load(trained_2d)
    x = torch.rand(1, 1, 44, 44, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(model(x), module.task.activation(module(x)))
        torch.testing.assert_close(model(x), module.predict(x))


def test_weights_named_otherwise_are_refused_naming_the_version(
    trained_2d: str, tmp_path: Path
) -> None:
    state = torch.load(trained_2d, map_location="cpu", weights_only=True)
    state["state_dict"] = {f"net.{k}": v for k, v in state["state_dict"].items()}
    other = tmp_path / "other.ckpt"
    torch.save(state, other)
    with pytest.raises(
        ValueError, match=r"other\.ckpt: its weights are named 'net\..*dacapo-hydra \S+ names"
    ):
        load(other)


def test_a_missing_checkpoint_is_named() -> None:
    with pytest.raises(FileNotFoundError, match=r"^checkpoint 'nope\.ckpt' does not exist$"):
        load_cached("nope.ckpt")
