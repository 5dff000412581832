"""What a resumable blockwise output was made with: recorded with it, compared on resume.

A blockwise output (the prediction of `dacapo-predict`, the labels of
`dacapo-apply`) records in its group's attributes (`dacapo.<key>`, written with the
group itself) what made it: for a prediction the model (:func:`model_sha256`), the
input and the parameters; for labels the post-processing parameters. A rerun into
the same output resumes the missing blocks only if it would make them the same
way; otherwise :func:`check_unchanged` refuses it with the difference named, before
anything is written, so an output is never stitched from two models or two sets
of parameters. `overwrite` (`--overwrite`) starts afresh instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Shown in messages: the start of a digest.
DIGEST_SHOWN = 12


def model_sha256(state_dict: Mapping[str, torch.Tensor], hparams: Mapping[str, Any]) -> str:
    """The sha256 of a model: its tensors and its stored config.

    Tensors are taken in sorted key order, each as its name, dtype, shape and raw
    bytes; the stored config (`config` and `meta`) as canonical JSON. The same
    weights and config give the same digest whatever file or device they are on.

    Args:
        state_dict: the module's tensors by name.
        hparams: the stored config (the checkpoint's `hyper_parameters`).

    """
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous().reshape(-1)
        header = f"{name}\0{tensor.dtype}\0{list(state_dict[name].shape)}\0"
        digest.update(header.encode())
        digest.update(tensor.view(torch.uint8).numpy())
    config = json.dumps(dict(hparams), sort_keys=True, separators=(",", ":"), default=str)
    digest.update(config.encode())
    return digest.hexdigest()


def as_recorded(value: Any) -> Any:
    """`value` as the attributes store it (JSON: tuples become lists, keys strings)."""
    return json.loads(json.dumps(value))


def _show(name: str, value: Any) -> str:
    if isinstance(value, str) and name.endswith("sha256"):
        return f"{name} {value[:DIGEST_SHOWN]}.."
    return f"{name} {value if isinstance(value, str) else json.dumps(value)}"


def recorded(container: str | Path, dataset: str, key: str) -> Any:
    """The record `dacapo.<key>` of an existing output group, or None if it has none."""
    import zarr

    node = zarr.open_group(str(container), mode="r")[dataset]
    return node.attrs.asdict().get("dacapo", {}).get(key)


def check_unchanged(
    container: str | Path, dataset: str, key: str, expected: Mapping[str, Any]
) -> None:
    """Refuse to resume an output made otherwise than `expected` says.

    Args:
        container: the output's zarr container.
        dataset: the output group in it (it exists).
        key: its record (`dacapo.<key>`), a mapping of name to value.
        expected: what this run would record.

    Raises:
        ValueError: one line naming the output, each name whose value differs,
            its recorded value and this run's, and `--overwrite`.

    """
    where = f"{container}/{dataset}"
    hint = "use --overwrite (overwrite=True) to start afresh"
    found = recorded(container, dataset, key)
    wanted = as_recorded(dict(expected))
    if found == wanted:
        return
    if not isinstance(found, Mapping):
        raise ValueError(
            f"{where}: holds no record of the {key.replace('_', ' ')} it was made with "
            f"(made by an older version, or not by this command); {hint}"
        )
    names = [*wanted, *(n for n in found if n not in wanted)]
    differ = [n for n in names if found.get(n) != wanted.get(n)]
    missing = "(none)"
    before = ", ".join(_show(n, found[n]) if n in found else f"{n} {missing}" for n in differ)
    now = ", ".join(_show(n, wanted[n]) if n in wanted else f"{n} {missing}" for n in differ)
    raise ValueError(f"{where}: started with {before}; this run has {now}; {hint}")
