"""Registered models (`mlflow.register_model_name`): what each version is, and which to use.

Each version a run registers gets a description a reader of the registry needs
without opening the run: the datasplit, the task (and architecture), the
criterion with its score and iteration, the voxel size, the run; the same facts
as version tags (`criterion`, `score`, `higher_is_better`). The alias `best`
follows the version whose score for its criterion is best (a version of the same
criterion with a better score takes it over; one of another criterion, or without
a score, never does), and the registered model's own description names it:
`models:/<name>@best` loads it (`mlflow.pytorch.load_model`). The newest version
needs no alias: MLflow reserves the name `latest` for it (`models:/<name>/latest`)
and refuses it as an alias.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

BEST_ALIAS = "best"


def version_description(
    choices: dict[str, str],
    criterion: str,
    score: float | None,
    iteration: int | None,
    voxel_size: Sequence[float],
    run: str,
) -> str:
    """One paragraph: datasplit, task, architecture, criterion and score, voxel size, run.

    Example:
        >>> version_description(
        ...     {"datasplit": "synthetic_3d", "task": "affinities", "architecture": "unet_tiny"},
        ...     "detection_f1", 0.91234, 300, (8.0, 8.0, 8.0), "affinities (0a1b2c)",
        ... )
        'datasplit synthetic_3d, task affinities, architecture unet_tiny; detection_f1 0.9123 at iteration 300; voxel size 8×8×8 nm; run affinities (0a1b2c)'

    """  # noqa: E501
    parts = ", ".join(
        f"{group} {choices[group]}"
        for group in ("datasplit", "task", "architecture")
        if group in choices
    )
    scored = (
        f"{criterion} {score:.4g} at iteration {iteration}"
        if score is not None and math.isfinite(score)
        else f"{criterion}: no validation score"
    )
    size = "×".join(f"{v:g}" for v in voxel_size)
    return f"{parts}; {scored}; voxel size {size} nm; run {run}"


def _better(score: float, than: float, higher: bool) -> bool:
    return score > than if higher else score < than


def describe_version(
    tracking_uri: str,
    name: str,
    run_id: str,
    description: str,
    criterion: str,
    score: float | None,
    higher: bool,
) -> str:
    """Describe and tag the version `run_id` registered under `name`; move `best` if it is.

    Returns:
        The version (as MLflow numbers it).

    Raises:
        LookupError: the run registered no version under `name`.

    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    versions = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if not versions:
        raise LookupError(f"run {run_id} registered no version of model {name!r}")
    version = str(max(int(v.version) for v in versions))
    client.update_model_version(name, version, description=description)
    scored = score is not None and math.isfinite(score)
    tags = {"criterion": criterion, "higher_is_better": "true" if higher else "false"}
    if scored:
        tags["score"] = repr(float(score))
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    try:
        best = client.get_model_version_by_alias(name, BEST_ALIAS)
    except MlflowException:  # no version is `best` yet
        best = None
    takes_over = best is None
    if best is not None and scored:
        held = best.tags.get("score")
        same = best.tags.get("criterion") == criterion
        takes_over = same and (held is None or _better(float(score), float(held), higher))
    if takes_over:
        client.set_registered_model_alias(name, BEST_ALIAS, version)
        client.update_registered_model(
            name,
            description=f"dacapo-hydra network; {BEST_ALIAS}: version {version}, {description}",
        )
    return version


def register_described(
    tracking_uri: str, name: str, run_id: str, run_name: str, facts: dict[str, Any]
) -> str | None:
    """:func:`describe_version` from a run's facts; a failure only warns (the run stands).

    Args:
        tracking_uri: the MLflow store.
        name: the registered model's name.
        run_id: the run that registered a version.
        run_name: its name, for the description.
        facts: `choices`, `criterion`, `score`, `iteration`, `voxel_size`,
            `higher_is_better`.

    """
    description = version_description(
        facts["choices"],
        facts["criterion"],
        facts.get("score"),
        facts.get("iteration"),
        facts["voxel_size"],
        f"{run_name} ({run_id})",
    )
    try:
        return describe_version(
            tracking_uri,
            name,
            run_id,
            description,
            facts["criterion"],
            facts.get("score"),
            bool(facts.get("higher_is_better", True)),
        )
    except Exception as err:  # the registered version stands without its description
        log.warning("model %s: could not describe run %s's version: %s", name, run_id, err)
        return None
