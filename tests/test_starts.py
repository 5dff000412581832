"""Starts: weights from another run's checkpoint or a weights file, matched by name and shape."""

from __future__ import annotations

import logging

import pytest
import torch

from dacapo_hydra.errors import ConfigError
from dacapo_hydra.training.build import build
from dacapo_hydra.training.starts import load_weights, read_state_dict


@pytest.fixture
def trained(trained_2d: str) -> str:
    """A checkpoint of a tiny 2D distance run (4 iterations), shared by the session."""
    return trained_2d


def test_start_from_checkpoint_with_a_new_head(trained, compose_tiny, caplog):
    saved = read_state_dict(trained)
    cfg = compose_tiny(datasplit="synthetic_2d", task="affinities", overrides=[f"start={trained}"])
    with caplog.at_level(logging.WARNING, logger="dacapo_hydra.training.starts"):
        module = build(cfg).module
    own = module.state_dict()
    for name, tensor in own.items():
        if name.startswith("architecture."):
            torch.testing.assert_close(tensor, saved[name])
    # The head has other channels (2 affinities vs 1 distance): initialised, and logged.
    assert own["head.weight"].shape != saved["head.weight"].shape
    assert "head.weight" in caplog.text and "head.bias" in caplog.text


def test_start_from_architecture_weights_file(compose_tiny, tmp_path):
    cfg = compose_tiny(datasplit="synthetic_2d")
    source = build(cfg).module
    path = tmp_path / "weights.pt"
    torch.save(source.architecture.state_dict(), path)
    target = build(cfg).module
    skipped = load_weights(target, path)
    assert skipped == ["head.bias", "head.weight"]
    for name, tensor in source.architecture.state_dict().items():
        torch.testing.assert_close(target.architecture.state_dict()[name], tensor)


def test_bad_starts_are_named(compose_tiny, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    with pytest.raises(ConfigError, match="notes.txt' is not a checkpoint or state dict"):
        build(compose_tiny(datasplit="synthetic_2d", overrides=[f"start={text}"]))
    with pytest.raises(ConfigError, match="checkpoint '.*missing.ckpt' does not exist"):
        build(compose_tiny(datasplit="synthetic_2d", overrides=[f"start={tmp_path}/missing.ckpt"]))
    other = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(ValueError, match="none of the 1 tensors in .*other.pt' fits"):
        load_weights(torch.nn.Conv2d(1, 1, 1), other)
