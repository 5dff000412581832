"""Export a trained model to a self-contained folder, to apply without the training code.

The folder holds:

- `model.pt2`: a torch.export program of network + head + the task's activation,
  for a fixed spatial input shape (the eval input shape unless told otherwise)
  and any batch size; load with `torch.export.load(path).module()`.
- `model.torchscript.pt`: the same as TorchScript (`torch.jit.load`), which
  bioimage.io and older tools read.
- `model.json`: axes, channels, input/output shapes and voxel sizes (nm), the
  context, the normalisation raw needs (the run's stored `Normalizer`: raw maps
  to `(x - lo) / (hi - lo)`), the activation, and the file names.
- `config.yaml`: the composed run config the model was trained with.
- `sample_input.npy` / `sample_output.npy`: a test pair (raw intensities in,
  prediction out).
- with `bioimageio=True`: `rdf.yaml`, a bioimage.io model description
  (format 0.5) with the TorchScript weights, and `README.md`, tested by
  `bioimageio.core` before the folder is kept (:mod:`~dacapo_hydra.export.bioimageio`).
- `apply.py`: a standalone script (torch + numpy only) that normalises a raw
  array and predicts it block by block.

The folder is built under a temporary name beside it and renamed into place at the
end: a failed export (a network that cannot be saved, a package that fails its test)
leaves nothing, and an `overwrite` keeps the old folder until the new one is whole.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from dacapo_hydra.architectures.inference import InferenceNetwork
from dacapo_hydra.data.normalize import scale_linear
from dacapo_hydra.export.bioimageio import package_name, test_package, write_bioimageio
from dacapo_hydra.model.load import load
from dacapo_hydra.model.trained import TrainedModel

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
APPLY_SCRIPT = Path(__file__).with_name("apply_script.py")
# The line of apply_script.py that export replaces with the source of what it imports.
_INLINED_IMPORT = f"from {scale_linear.__module__} import {scale_linear.__name__}\n"


def apply_script_source() -> str:
    """The standalone `apply.py`: :mod:`~dacapo_hydra.export.apply_script`, package-free.

    Its one import from the package (:func:`~dacapo_hydra.data.normalize.scale_linear`)
    is replaced by that function's source, so the exported script runs with numpy
    and torch alone and the normalisation is written once, in the package.

    Example:
        >>> lines = apply_script_source().splitlines()
        >>> [line for line in lines if line.startswith(("from dacapo_hydra", "import dacapo"))]
        []
        >>> sum(line.startswith("def scale_linear(") for line in lines)
        1

    """
    script = APPLY_SCRIPT.read_text()
    if script.count(_INLINED_IMPORT) != 1:
        raise RuntimeError(f"{APPLY_SCRIPT}: expected the line {_INLINED_IMPORT.strip()!r} once")
    return script.replace(_INLINED_IMPORT, "\n" + inspect.getsource(scale_linear))


@dataclass
class ExportedModel:
    """Where an export went and what it holds."""

    folder: Path
    metadata: dict[str, Any]


def _export_program(
    network: nn.Module, example: torch.Tensor, path: Path
) -> tuple[str | None, bool]:
    """Save a torch.export program; returns (error or None, whether batch is dynamic).

    The dynamic-batch attempt traces a batch of 2: torch.export specialises a
    dimension whose example size is 0 or 1.
    """
    for dynamic in (True, False):
        shapes = {"raw": {0: torch.export.Dim("batch", min=1, max=1024)}} if dynamic else None
        sample = torch.cat([example, example]) if dynamic else example
        try:
            program = torch.export.export(network, (sample,), dynamic_shapes=shapes)
        except Exception as err:  # export refuses some networks; fall back below
            error = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"
            continue
        torch.export.save(program, str(path))
        return None, dynamic
    return error, False


def _export_torchscript(network: nn.Module, example: torch.Tensor, path: Path) -> str | None:
    """Save a traced TorchScript module; returns an error message or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(network, example, check_trace=False)
        torch.jit.save(traced, str(path))
    except Exception as err:  # tracing refuses some networks
        return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"
    return None


def export_model(
    checkpoint: str | Path,
    folder: str | Path,
    input_shape: list[int] | tuple[int, ...] | None = None,
    overwrite: bool = False,
    bioimageio: bool = False,
    authors: list[str] | None = None,
    trust_checkpoint: bool = False,
    name: str | None = None,
) -> ExportedModel:
    """Export the model in `checkpoint` (a dacapo-hydra Lightning checkpoint) to `folder`.

    Args:
        checkpoint: path of the checkpoint (e.g. a run's `checkpoints/last.ckpt`).
        folder: where to write; created, and must be empty unless `overwrite`.
        input_shape: spatial input shape (voxels) of the program (default: the
            architecture's eval input shape); must be valid for the network.
        overwrite: replace an existing folder's contents.
        bioimageio: also write a bioimage.io description (`rdf.yaml`) and test the
            package with bioimageio.core (the `bioimageio` extra).
        authors: names for the bioimage.io description.
        trust_checkpoint: build whatever the checkpoint's stored config names (it
            runs code; see :mod:`dacapo_hydra.trust`).
        name: the model's name (bioimage.io: 5 to 64 letters, digits, spaces,
            `_+-()`); default: derived from the run's name or its group choices.

    Returns:
        The folder and the metadata written to `model.json`.

    Raises:
        FileNotFoundError: if the checkpoint does not exist.
        ValueError: for a bad input shape or name, a non-empty folder, a folder that
            cannot be written, a network that neither torch.export nor TorchScript
            can save, a bioimage.io package that fails its test, or a checkpoint whose
            config names a target off the allow-list (unless `trust_checkpoint`).

    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not overwrite:
        raise ValueError(f"export: folder {str(folder)!r} is not empty (use overwrite)")
    model = load(checkpoint, trust=trust_checkpoint)
    architecture = model.architecture
    shape = tuple(int(s) for s in (input_shape or architecture.eval_input_shape))
    architecture.check_input_shape("eval_input_shape (export input_shape)", shape)
    label = package_name(name, model.spec.name or Path(checkpoint).stem)
    tmp = _staging(folder)
    try:
        metadata = _write_export(tmp, model, shape, label, Path(checkpoint))
        if bioimageio:
            test_package(write_bioimageio(tmp, metadata, authors))
        _put_in_place(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("export: %s -> %s", checkpoint, folder)
    return ExportedModel(folder=folder, metadata=metadata)


def _staging(folder: Path) -> Path:
    """A new empty folder beside `folder`, to build the export in.

    Raises:
        ValueError: the parent folder cannot be written.

    """
    tmp = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir(parents=True)
    except OSError as err:
        raise ValueError(
            f"export: cannot write into {str(folder.parent)!r}: {err.strerror or err}"
        ) from None
    return tmp


def _put_in_place(tmp: Path, folder: Path) -> None:
    """Rename the finished export `tmp` to `folder`, replacing what is there."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(folder, old)
    os.rename(tmp, folder)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()


def _write_export(
    folder: Path, model: TrainedModel, shape: tuple[int, ...], name: str, checkpoint: Path
) -> dict[str, Any]:
    """Write the programs, test pair, config, metadata and apply.py; returns the metadata."""
    architecture = model.architecture
    network = InferenceNetwork(architecture, model.head, model.task).eval()
    normalizer = model.spec.normalizer
    generator = torch.Generator().manual_seed(0)
    unit = torch.rand(1, architecture.in_channels, *shape, generator=generator)
    sample_raw = (unit * (normalizer.hi - normalizer.lo) + normalizer.lo).numpy()
    sample_raw = sample_raw.astype(np.float32)
    example = torch.from_numpy(normalizer(sample_raw))
    with torch.no_grad():
        sample_output = network(example)
    program_error, dynamic_batch = _export_program(network, example, folder / "model.pt2")
    script_error = _export_torchscript(network, example, folder / "model.torchscript.pt")
    if program_error and script_error:
        raise ValueError(
            f"export: neither torch.export ({program_error}) nor TorchScript ({script_error}) "
            "can save this network"
        )
    for what, error in (("torch.export", program_error), ("TorchScript", script_error)):
        if error:
            log.warning("export: no %s file: %s", what, error)
    metadata = _metadata(model, shape, name, checkpoint, int(sample_output.shape[1]))
    metadata["files"]["program"] = None if program_error else "model.pt2"
    metadata["files"]["torchscript"] = None if script_error else "model.torchscript.pt"
    metadata["dynamic_batch"] = dynamic_batch
    (folder / "model.json").write_text(json.dumps(metadata, indent=2) + "\n")
    OmegaConf.save(OmegaConf.create(dict(model.spec.config)), folder / "config.yaml")
    np.save(folder / "sample_input.npy", sample_raw)
    np.save(folder / "sample_output.npy", sample_output.numpy())
    (folder / "apply.py").write_text(apply_script_source())
    return metadata


def _metadata(
    model: TrainedModel, shape: tuple[int, ...], name: str, checkpoint: Path, channels: int
) -> dict[str, Any]:
    """What `model.json` says: files, axes, shapes, voxel sizes, normalisation, task."""
    architecture = model.architecture
    spec = model.spec
    dims = architecture.dims
    voxel_size = list(spec.voxel_size)
    upsample = list(architecture.upsample_factor)
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "checkpoint": str(checkpoint.resolve()),
        "files": {
            "program": None,
            "torchscript": None,
            "config": "config.yaml",
            "sample_input": "sample_input.npy",
            "sample_output": "sample_output.npy",
        },
        "dims": dims,
        "axes": ["b", "c", *"zyx"[3 - dims :]],
        "in_channels": architecture.in_channels,
        "out_channels": channels,
        "input_shape": list(shape),
        "output_shape": list(architecture.output_shape(shape)),
        "dynamic_batch": False,
        "context": [float(c) for c in architecture.context_for(shape)],
        "upsample_factor": upsample,
        "input_voxel_size": voxel_size,
        "output_voxel_size": [v / u for v, u in zip(voxel_size, upsample, strict=True)],
        "gt_voxel_size": list(spec.gt_voxel_size),
        "normalize": spec.normalizer.to_dict(),
        "pad_mode": spec.pad_mode,
        "architecture": spec.target["architecture"],
        "task": spec.target["task"],
        "activation": f"{type(model.task).__name__}.activation",
    }
