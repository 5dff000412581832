"""Build a datasplit YAML from a CSV of zarr paths and class names (`dacapo-datasplit`).

Reads DaCapo's DataSplitGenerator CSV as is: one row per dataset,
`train|val, raw_container, raw_dataset, gt_container, gt_dataset`, where the gt
dataset may name classes in brackets, `labels/[mito&er]`, each class being the
dataset with the bracket replaced by its name (`labels/mito`, `labels/er`). One
class gives its label array as gt; several give one binarised channel each,
concatenated, with a missing-annotations mask so that a class a dataset lacks is
unknown rather than background. The scale level is chosen by the input (raw)
and output (gt) voxel sizes.
"""

from __future__ import annotations

import copy
import csv
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from dacapo_hydra.data.array import ZarrArray

CLASSES = re.compile(r"\[([^\]]*)\]")
KINDS = {"train": "train", "val": "validate", "validate": "validate", "test": "validate"}


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """The CSV's rows as dicts (kind, raw_container, raw_dataset, gt_container, gt_dataset).

    Raises:
        FileNotFoundError: the CSV is missing.
        ValueError: a row has the wrong number of fields or an unknown kind.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"datasplit CSV {str(path)!r} does not exist")
    rows = []
    with path.open(newline="") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            fields = [c.strip() for c in row]
            if not fields or not any(fields) or fields[0].startswith("#"):
                continue
            if len(fields) != 5:
                raise ValueError(
                    f"{path}:{number}: expected 5 fields (train|val, raw_container, raw_dataset, "
                    f"gt_container, gt_dataset), got {len(fields)}: {row}"
                )
            if fields[0].lower() not in KINDS:
                raise ValueError(
                    f"{path}:{number}: first field must be train or val, got {fields[0]!r}"
                )
            keys = ("kind", "raw_container", "raw_dataset", "gt_container", "gt_dataset")
            rows.append(dict(zip(keys, fields, strict=True)))
    if not rows:
        raise ValueError(f"{path}: no datasets listed")
    return rows


def _exists(container: str, dataset: str) -> bool:
    try:
        ZarrArray.open(container, dataset)
    except KeyError:
        return False
    except ValueError:
        return True  # present, but without metadata: the datasplit must give voxel_size
    return True


def dataset_entry(row: dict[str, str], name: str, check: bool = True) -> dict[str, Any]:
    """One datasplit dataset from a CSV row."""
    raw = {"container": row["raw_container"], "dataset": row["raw_dataset"]}
    gt_container, gt_dataset = row["gt_container"], row["gt_dataset"]
    match = CLASSES.search(gt_dataset)
    entry: dict[str, Any] = {"name": name, "raw": raw}
    if match is None:
        entry["gt"] = {"container": gt_container, "dataset": gt_dataset}
        return entry
    classes = [c.strip() for c in match.group(1).split("&") if c.strip()]
    if not classes:
        raise ValueError(f"{gt_dataset!r}: empty class list in brackets")
    paths = {c: gt_dataset[: match.start()] + c + gt_dataset[match.end() :] for c in classes}
    if len(classes) == 1:
        entry["gt"] = {"container": gt_container, "dataset": paths[classes[0]]}
        return entry
    channels: dict[str, Any] = {}
    for c, dataset in paths.items():
        present = not check or _exists(gt_container, dataset)
        channels[c] = (
            {"type": "binarize", "source": {"container": gt_container, "dataset": dataset}}
            if present
            else None
        )
    if not any(channels.values()):
        raise KeyError(f"{gt_container}: none of the class datasets {list(paths.values())} exist")
    concat = {"type": "concat", "channels": channels}
    entry["gt"] = concat
    entry["mask"] = {"type": "missing_annotations_mask", "source": copy.deepcopy(concat)}
    return entry


def build_datasplit(
    rows: Sequence[dict[str, str]],
    dims: int = 3,
    input_voxel_size: Sequence[float] | None = None,
    output_voxel_size: Sequence[float] | None = None,
    check: bool = True,
) -> dict[str, Any]:
    """The datasplit config (as plain data) for `rows`."""
    split: dict[str, Any] = {"dims": dims, "train": [], "validate": []}
    if input_voxel_size:
        split["input_voxel_size"] = [float(v) for v in input_voxel_size]
    if output_voxel_size:
        split["output_voxel_size"] = [float(v) for v in output_voxel_size]
    seen: dict[str, int] = {}
    for row in rows:
        stem = Path(row["raw_container"].rstrip("/")).stem
        crop = CLASSES.sub("", row["gt_dataset"]).strip("/").replace("/", "_")
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{stem}_{crop}" if crop else stem)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}_{seen[name]}"
        split[KINDS[row["kind"].lower()]].append(dataset_entry(row, name, check))
    if not split["train"]:
        raise ValueError("the CSV lists no train rows")
    return split


def to_yaml(split: dict[str, Any], source: str) -> str:
    """The datasplit as a YAML option of the `datasplit` group."""
    header = (
        f"# Generated by dacapo-datasplit from {source}.\n"
        "defaults:\n  - /schema/datasplit/datasplit@_here_\n  - _self_\n\n"
    )
    return header + yaml.safe_dump(split, sort_keys=False, default_flow_style=None)
