"""The fingerprint and the plan as one table: key, value and why, one row each."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dacapo_hydra.data.fingerprint import Fingerprint, Spread
from dacapo_hydra.planning.plan import Plan


def _show(value: Any) -> str:
    if isinstance(value, Spread):
        if value.p50 is None:
            return "-"
        return f"p10 {value.p10:.4g}, p50 {value.p50:.4g}, p90 {value.p90:.4g}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def fingerprint_rows(fp: Fingerprint) -> list[tuple[str, str, str]]:
    """(key, value, what it is) for each measurement of the fingerprint."""
    sample = f"measured on {fp.sample_voxels} voxels of {fp.datasets} training dataset(s)"
    rows = [
        ("data.voxel_size", _show(list(fp.voxel_size)), "nm per axis (z, y, x)"),
        ("data.anisotropy", _show(list(fp.anisotropy)), "each axis' voxel size / the finest"),
        ("data.labelled_extent", _show(list(fp.labelled_extent_nm)), "nm per axis, largest"),
        ("data.labelled_voxels", str(fp.labelled_voxels), "over the training datasets"),
        ("data.objects", str(fp.objects), sample),
        ("data.object_radius", _show(fp.radius), "inscribed radius, nm"),
    ]
    for axis, spread in zip("zyx"[-fp.dims :], fp.radius_per_axis, strict=True):
        rows.append((f"data.object_radius.{axis}", _show(spread), f"semi-axis along {axis}, nm"))
    rows += [
        ("data.foreground_fraction", _show(fp.foreground_fraction), "labelled objects / voxels"),
        ("data.mask_coverage", _show(fp.mask_coverage), "masked-in / voxels"),
        ("data.intensity", _show(fp.intensity), "the normaliser's values (raw units)"),
    ]
    if fp.class_frequencies:
        rows.append(("data.class_frequencies", _show(fp.class_frequencies), "share per label"))
    return rows


def plan_table(plan: Plan, overridden: Sequence[str] = ()) -> str:
    """The fingerprint's rows, then the plan's: `key  value  reason`, columns aligned.

    Args:
        plan: the plan.
        overridden: keys the command line set (marked: its value wins).

    """
    rows = fingerprint_rows(plan.fingerprint) if plan.fingerprint else []
    rows += [
        (
            v.key,
            _show(v.value),
            ("OVERRIDDEN by the command line; " * (v.key in overridden)) + v.reason,
        )
        for v in plan.values
    ]
    key_width = max(len(r[0]) for r in rows)
    value_width = min(40, max(len(r[1]) for r in rows))
    return "\n".join(
        f"{key:<{key_width}}  {value:<{value_width}}  {why}" for key, value, why in rows
    )
