"""Apply an exported dacapo-hydra model to a raw array, with torch and numpy only.

Copied into every export folder as `apply.py`; it needs nothing from the
training code. From a shell, in the folder::

    python apply.py raw.npy prediction.npy

or from Python: `predict(raw)` (raw: spatial axes z, y, x (2D: y, x), optionally
channels first). Raw is normalised as in training, padded by the network's
context, and predicted block by block; the prediction covers the raw array, at
`upsample_factor` times its resolution.

In the package this is a module like any other; export writes it to `apply.py`
with the import of `scale_linear` replaced by that function's source
(:func:`dacapo_hydra.export.model.apply_script_source`), so the exported script
runs with numpy and torch alone, and the normalisation has one written definition.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Export writes this function's source here (see the module docstring).
from dacapo_hydra.data.normalize import scale_linear

HERE = Path(__file__).resolve().parent


def load(folder: str | Path = HERE) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The exported network (torch.export program, else TorchScript) and its metadata."""
    folder = Path(folder)
    meta = json.loads((folder / "model.json").read_text())
    files = meta["files"]
    if files.get("program"):
        network = torch.export.load(str(folder / files["program"])).module()
    else:
        network = torch.jit.load(str(folder / files["torchscript"]), map_location="cpu")
    return network, meta


def normalize(raw: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Raw as the model was trained on it: `(raw - lo) / (hi - lo)` as float32.

    `lo`/`hi` are the training run's values, from `model.json` (every mode of
    the package's `Normalizer` reduces to this map; mode `none` has lo 0, hi 1).
    """
    return scale_linear(raw, float(meta["normalize"]["lo"]), float(meta["normalize"]["hi"]))


def predict(
    raw: np.ndarray,
    folder: str | Path = HERE,
    pad_mode: str | None = None,
    network: torch.nn.Module | None = None,
    meta: dict[str, Any] | None = None,
) -> np.ndarray:
    """Predict a whole raw array block by block; returns (out_channels, *spatial * upsample).

    `pad_mode` (numpy's; default: the training data's) fills the context at the edges.

    Raises:
        ValueError: if `raw`'s axes don't fit the model, or the model's output
            blocks don't tile its input grid.

    """
    if network is None or meta is None:
        network, meta = load(folder)
    dims = meta["dims"]
    if raw.ndim == dims:
        raw = raw[None]
    if raw.ndim != dims + 1 or raw.shape[0] != meta["in_channels"]:
        raise ValueError(
            f"raw has shape {list(raw.shape)}; expected {dims} spatial axes with "
            f"{meta['in_channels']} channel(s) first"
        )
    in_shape, out_shape = meta["input_shape"], meta["output_shape"]
    up = meta["upsample_factor"]
    step = [o // u for o, u in zip(out_shape, up, strict=True)]
    context = [(i - s) / 2 for i, s in zip(in_shape, step, strict=True)]
    if any(o % u for o, u in zip(out_shape, up, strict=True)) or any(c != int(c) for c in context):
        raise ValueError(
            f"output blocks {out_shape} don't tile the input grid; export another shape"
        )
    context_int = [int(c) for c in context]
    spatial = raw.shape[1:]
    blocks = [math.ceil(s / t) for s, t in zip(spatial, step, strict=True)]
    pad = [(0, 0)] + [
        (c, c + b * t - s) for c, b, t, s in zip(context_int, blocks, step, spatial, strict=True)
    ]
    data = normalize(raw, meta)
    mode = pad_mode or meta.get("pad_mode") or "reflect"
    try:
        data = np.pad(data, pad, mode="constant" if mode == "zero" else mode)
    except ValueError:  # an unknown mode, or reflect on less data than the padding
        data = np.pad(data, pad, mode="edge")
    out = np.zeros(
        (meta["out_channels"], *[b * o for b, o in zip(blocks, out_shape, strict=True)]),
        np.float32,
    )
    with torch.no_grad():
        for index in np.ndindex(*blocks):
            source = tuple(
                slice(i * t, i * t + n) for i, t, n in zip(index, step, in_shape, strict=True)
            )
            target = tuple(slice(i * o, (i + 1) * o) for i, o in zip(index, out_shape, strict=True))
            block = torch.from_numpy(np.ascontiguousarray(data[(slice(None), *source)]))
            out[(slice(None), *target)] = network(block[None])[0].numpy()
    return out[(slice(None), *[slice(0, s * u) for s, u in zip(spatial, up, strict=True)])]


def main(argv: list[str] | None = None) -> int:
    """`python apply.py RAW.npy OUT.npy`: predict a raw array saved with numpy."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python apply.py RAW.npy OUT.npy", file=sys.stderr)
        return 2
    np.save(args[1], predict(np.load(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
