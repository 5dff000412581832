"""Export a trained model to a self-contained folder, to apply without the training code.

The folder holds:

- `model.pt2`: a torch.export program of network + head + the task's activation,
  for a fixed spatial input shape (the eval input shape unless told otherwise)
  and any batch size; load with `torch.export.load(path).module()`.
- `model.torchscript.pt`: the same as TorchScript (`torch.jit.load`), which
  bioimage.io and older tools read.
- `model.json`: axes, channels, input/output shapes and voxel sizes (nm), the
  context, the normalisation raw needs, the activation, and the file names.
- `config.yaml`: the composed run config the model was trained with.
- `sample_input.npy` / `sample_output.npy`: a test pair (normalised input).
- `apply.py`: a standalone script (torch + numpy only) that normalises a raw
  array and predicts it block by block.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from dacapo_hydra.run import module_from_checkpoint

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
APPLY_SCRIPT = Path(__file__).with_name("export_apply.py")


class InferenceNetwork(nn.Module):
    """Network, head and the task's activation: raw (normalised) in, prediction out."""

    def __init__(self, architecture: nn.Module, head: nn.Module, task: Any) -> None:
        super().__init__()
        self.architecture = architecture
        self.head = head
        self._activation = task.activation

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Prediction for a (N, C, *spatial) normalised raw batch."""
        return self._activation(self.head(self.architecture(raw)))


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
) -> ExportedModel:
    """Export the model in `checkpoint` (a dacapo-hydra Lightning checkpoint) to `folder`.

    Args:
        checkpoint: path of the checkpoint (e.g. a run's `checkpoints/last.ckpt`).
        folder: where to write; created, and must be empty unless `overwrite`.
        input_shape: spatial input shape (voxels) of the program (default: the
            architecture's eval input shape); must be valid for the network.
        overwrite: replace an existing folder's contents.

    Returns:
        The folder and the metadata written to `model.json`.

    Raises:
        FileNotFoundError: if the checkpoint does not exist.
        ValueError: for a bad input shape, a non-empty folder, or a network that
            neither torch.export nor TorchScript can save.

    """
    module = module_from_checkpoint(checkpoint)
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
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(1, architecture.in_channels, *shape, generator=generator)
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
    normalize = (config.get("datasplit") or {}).get("normalize")
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
        "normalize": (
            {"min": normalize.get("min"), "max": normalize.get("max"), "to": [0.0, 1.0]}
            if normalize
            else None
        ),
        "pad_mode": (config.get("datasplit") or {}).get("pad_mode", "reflect"),
        "architecture": (config.get("architecture") or {}).get("_target_"),
        "task": (config.get("task") or {}).get("_target_"),
        "activation": f"{type(module.task).__name__}.activation",
    }
    (folder / "model.json").write_text(json.dumps(metadata, indent=2) + "\n")
    OmegaConf.save(OmegaConf.create(config), folder / "config.yaml")
    np.save(folder / "sample_input.npy", example.numpy())
    np.save(folder / "sample_output.npy", sample_output.numpy())
    shutil.copyfile(APPLY_SCRIPT, folder / "apply.py")
    log.info("export: %s -> %s", checkpoint, folder)
    return ExportedModel(folder=folder, metadata=metadata)


def main(argv: list[str] | None = None) -> int:
    """`dacapo-export CHECKPOINT FOLDER [--input-shape Z Y X] [--overwrite]`."""
    parser = argparse.ArgumentParser(
        prog="dacapo-export",
        description="Export a trained model to a folder that applies without training code.",
    )
    parser.add_argument("checkpoint", help="a run's Lightning checkpoint (e.g. last.ckpt)")
    parser.add_argument("folder", help="output folder")
    parser.add_argument(
        "--input-shape", type=int, nargs="+", default=None, help="spatial input voxels"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        exported = export_model(args.checkpoint, args.folder, args.input_shape, args.overwrite)
    except (ValueError, FileNotFoundError) as err:
        print(f"dacapo-export: error: {err}", file=sys.stderr)
        return 2
    print(f"dacapo-export: wrote {exported.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
