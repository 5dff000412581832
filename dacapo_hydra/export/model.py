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
  (`bioimageio.spec`, format 0.5) with the TorchScript weights, and `README.md`.
- `apply.py`: a standalone script (torch + numpy only) that normalises a raw
  array and predicts it block by block.
"""

from __future__ import annotations

import inspect
import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from dacapo_hydra.architectures.inference import InferenceNetwork
from dacapo_hydra.data.normalize import Normalizer, scale_linear
from dacapo_hydra.training.module import RunModule

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


def write_bioimageio(
    folder: Path,
    metadata: dict[str, Any],
    authors: list[str] | None = None,
    license_id: str = "CC-BY-4.0",
) -> Path:
    """Write `rdf.yaml`, a bioimage.io model description (format 0.5), into an export folder.

    It points at the folder's TorchScript weights and test pair; the raw
    normalisation becomes a `scale_linear` preprocessing step. The description is
    validated (files and checksums) before it is written.

    Raises:
        ValueError: if `bioimageio.spec` is missing, the export has no TorchScript
            file, or the description does not validate.

    """
    try:
        from bioimageio.spec import ValidationContext, save_bioimageio_yaml_only
        from bioimageio.spec.model import v0_5 as bio
    except ImportError:
        raise ValueError(
            "export: a bioimage.io description needs `pip install bioimageio.spec`"
        ) from None
    if not metadata["files"]["torchscript"]:
        raise ValueError("export: bioimage.io needs TorchScript weights, which failed to save")
    spatial = "zyx"[3 - metadata["dims"] :]
    norm = Normalizer.from_dict(metadata["normalize"])
    preprocessing = (
        [bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=norm.gain, offset=norm.offset))]
        if norm.mode != "none"
        else []
    )
    readme = folder / "README.md"
    readme.write_text(
        f"# {metadata['name']}\n\nA dacapo-hydra model ({metadata['architecture']}, "
        f"{metadata['task']}), exported from `{metadata['checkpoint']}`.\n\n"
        "Input: raw intensities, normalised as in `model.json`; output: the task's "
        "prediction after its activation. `apply.py` predicts a whole array blockwise "
        "with torch and numpy only; `config.yaml` is the training config.\n"
    )

    def axes(shape: list[int], voxel: list[float], names: list[str], cls: Any) -> list[Any]:
        channel = bio.ChannelAxis(channel_names=[bio.Identifier(n) for n in names])
        space = [
            cls(id=bio.AxisId(a), size=int(n), scale=float(v), unit="nanometer")
            for a, n, v in zip(spatial, shape, voxel, strict=True)
        ]
        return [bio.BatchAxis(), channel, *space]

    try:
        with ValidationContext(root=folder, perform_io_checks=True):
            model = bio.ModelDescr(
                name=metadata["name"],
                description=f"dacapo-hydra: {metadata['task']} with {metadata['architecture']}",
                authors=[bio.Author(name=n) for n in (authors or ["dacapo-hydra user"])],
                cite=[
                    bio.CiteEntry(
                        text="DaCapo", url=bio.HttpUrl("https://github.com/janelia-cellmap/dacapo")
                    )
                ],
                license=bio.LicenseId(license_id),
                documentation=bio.FileDescr(source=Path(readme.name)),
                inputs=[
                    bio.InputTensorDescr(
                        id=bio.TensorId("raw"),
                        axes=axes(
                            metadata["input_shape"],
                            metadata["input_voxel_size"],
                            [f"raw{i}" for i in range(metadata["in_channels"])],
                            bio.SpaceInputAxis,
                        ),
                        test_tensor=bio.FileDescr(source=Path(metadata["files"]["sample_input"])),
                        preprocessing=preprocessing,
                    )
                ],
                outputs=[
                    bio.OutputTensorDescr(
                        id=bio.TensorId("prediction"),
                        axes=axes(
                            metadata["output_shape"],
                            metadata["output_voxel_size"],
                            [f"c{i}" for i in range(metadata["out_channels"])],
                            bio.SpaceOutputAxis,
                        ),
                        test_tensor=bio.FileDescr(source=Path(metadata["files"]["sample_output"])),
                    )
                ],
                weights=bio.WeightsDescr(
                    torchscript=bio.TorchscriptWeightsDescr(
                        source=Path(metadata["files"]["torchscript"]),
                        pytorch_version=bio.Version(torch.__version__.split("+")[0]),
                    )
                ),
                # Outputs of a briefly trained model can be tiny; compare closely.
                config=bio.Config(
                    bioimageio=bio.BioimageioConfig(
                        reproducibility_tolerance=[
                            bio.ReproducibilityTolerance(
                                absolute_tolerance=1e-5, relative_tolerance=1e-4
                            )
                        ]
                    )
                ),
            )
    except ValueError as err:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"export: the bioimage.io description does not validate: {err}") from None
    path = folder / "rdf.yaml"
    save_bioimageio_yaml_only(model, path)
    return path


def export_model(
    checkpoint: str | Path,
    folder: str | Path,
    input_shape: list[int] | tuple[int, ...] | None = None,
    overwrite: bool = False,
    bioimageio: bool = False,
    authors: list[str] | None = None,
    trust_checkpoint: bool = False,
) -> ExportedModel:
    """Export the model in `checkpoint` (a dacapo-hydra Lightning checkpoint) to `folder`.

    Args:
        checkpoint: path of the checkpoint (e.g. a run's `checkpoints/last.ckpt`).
        folder: where to write; created, and must be empty unless `overwrite`.
        input_shape: spatial input shape (voxels) of the program (default: the
            architecture's eval input shape); must be valid for the network.
        overwrite: replace an existing folder's contents.
        bioimageio: also write a bioimage.io description (`rdf.yaml`).
        authors: names for the bioimage.io description.
        trust_checkpoint: build whatever the checkpoint's stored config names (it
            runs code; see :mod:`dacapo_hydra.trust`).

    Returns:
        The folder and the metadata written to `model.json`.

    Raises:
        FileNotFoundError: if the checkpoint does not exist.
        ValueError: for a bad input shape, a non-empty folder, a network that
            neither torch.export nor TorchScript can save, or a checkpoint whose
            config names a target off the allow-list (unless `trust_checkpoint`).

    """
    module = RunModule.from_checkpoint(checkpoint, trust=trust_checkpoint)
    architecture = module.architecture
    shape = tuple(int(s) for s in (input_shape or architecture.eval_input_shape))
    architecture.check_input_shape("eval_input_shape (export input_shape)", shape)
    out_shape = architecture.output_shape(shape)
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise ValueError(f"export: folder {str(folder)!r} is not empty (use overwrite)")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)

    config = module.hparams["config"]
    meta = module.hparams["meta"]
    network = InferenceNetwork(architecture, module.head, module.task).eval()
    normalizer = Normalizer.from_hparams(module.hparams)
    lo, hi = normalizer.lo, normalizer.hi
    generator = torch.Generator().manual_seed(0)
    unit = torch.rand(1, architecture.in_channels, *shape, generator=generator)
    sample_raw = (unit * (hi - lo) + lo).numpy().astype(np.float32)
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
    for name, error in (("torch.export", program_error), ("TorchScript", script_error)):
        if error:
            log.warning("export: no %s file: %s", name, error)

    dims = architecture.dims
    voxel_size = [float(v) for v in meta["voxel_size"]]
    upsample = list(architecture.upsample_factor)
    metadata: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": config.get("run_name")
        or "-".join(str(v) for v in (config.get("choices") or {}).values() if v)
        or Path(checkpoint).stem,
        "checkpoint": str(Path(checkpoint).resolve()),
        "files": {
            "program": None if program_error else "model.pt2",
            "torchscript": None if script_error else "model.torchscript.pt",
            "config": "config.yaml",
            "sample_input": "sample_input.npy",
            "sample_output": "sample_output.npy",
        },
        "dims": dims,
        "axes": ["b", "c", *"zyx"[3 - dims :]],
        "in_channels": architecture.in_channels,
        "out_channels": int(sample_output.shape[1]),
        "input_shape": list(shape),
        "output_shape": list(out_shape),
        "dynamic_batch": dynamic_batch,
        "context": [float(c) for c in architecture.context_for(shape)],
        "upsample_factor": upsample,
        "input_voxel_size": voxel_size,
        "output_voxel_size": [v / u for v, u in zip(voxel_size, upsample, strict=True)],
        "gt_voxel_size": [float(v) for v in meta["gt_voxel_size"]],
        "normalize": normalizer.to_dict(),
        "pad_mode": (config.get("datasplit") or {}).get("pad_mode", "reflect"),
        "architecture": (config.get("architecture") or {}).get("_target_"),
        "task": (config.get("task") or {}).get("_target_"),
        "activation": f"{type(module.task).__name__}.activation",
    }
    (folder / "model.json").write_text(json.dumps(metadata, indent=2) + "\n")
    OmegaConf.save(OmegaConf.create(config), folder / "config.yaml")
    np.save(folder / "sample_input.npy", sample_raw)
    np.save(folder / "sample_output.npy", sample_output.numpy())
    (folder / "apply.py").write_text(apply_script_source())
    if bioimageio:
        write_bioimageio(folder, metadata, authors)
    log.info("export: %s -> %s", checkpoint, folder)
    return ExportedModel(folder=folder, metadata=metadata)
