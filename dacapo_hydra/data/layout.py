"""DaCapo's convention-over-configuration layout, read as a datasplit.

A folder (or zarr container) holds a `train` and a `test` group; each is either
one dataset (it holds `raw` and `labels`, optionally `mask`) or holds several
zarr containers, one dataset each. As DaCapo's SimpleDataSplitConfig.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zarr


def layout_datasets(cfg: Mapping[str, Any], key: str = "datasplit.layout") -> dict[str, list]:
    """Dataset configs (`train`, `validate`) found under `cfg['path']`.

    Args:
        cfg: `path`, and optionally `train_group` (train), `validate_group` (test),
            `raw_name` (raw), `gt_name` (labels), `mask_name` (mask).
        key: where `cfg` sits, for messages.

    Raises:
        FileNotFoundError: the path or its train group is missing.

    """
    if not cfg.get("path"):
        raise ValueError(f"{key}.path is missing")
    root = Path(cfg["path"])
    if not root.exists():
        raise FileNotFoundError(f"{key}.path {str(root)!r} does not exist")
    names = {
        "raw": cfg.get("raw_name") or "raw",
        "gt": cfg.get("gt_name") or "labels",
        "mask": cfg.get("mask_name") or "mask",
    }
    out: dict[str, list] = {}
    for part, group in (
        ("train", cfg.get("train_group") or "train"),
        ("validate", cfg.get("validate_group") or "test"),
    ):
        folder = root / group
        if not folder.exists():
            if part == "train":
                raise FileNotFoundError(f"{key}: {str(folder)!r} (the train group) does not exist")
            out[part] = []
            continue
        if (folder / names["raw"]).exists():
            candidates = [(str(root), group)]
        else:
            candidates = [(str(c), "") for c in sorted(folder.glob("*.zarr"))]
        datasets = []
        for container, prefix in candidates:

            def path(name: str, prefix: str = prefix) -> str:
                return f"{prefix}/{name}" if prefix else name

            members = _members(container, prefix)
            for needed in ("raw", "gt"):
                if names[needed] not in members:
                    raise KeyError(
                        f"{key}: {container}:{path(names[needed])} is missing; the layout "
                        f"expects {names['raw']!r} and {names['gt']!r} in each dataset"
                    )
            entry: dict[str, Any] = {
                "name": f"{Path(container).stem}_{group}" if prefix else Path(container).stem,
                "raw": {"container": container, "dataset": path(names["raw"])},
                "gt": {"container": container, "dataset": path(names["gt"])},
            }
            if names["mask"] in members:
                entry["mask"] = {"container": container, "dataset": path(names["mask"])}
            datasets.append(entry)
        out[part] = datasets
    return out


def _members(container: str, prefix: str) -> set[str]:
    group = zarr.open_group(container, mode="r")
    if prefix:
        group = group[prefix]
    # Nested too: a name may be a path, e.g. `raw/labels/labels` (an image's label image).
    return {name for name, _ in group.members(max_depth=None)}
