"""What a run records of its config and plan in MLflow: params, `config.yaml`, `plan.yaml`."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any


def plan_params(config: dict[str, Any]) -> dict[str, Any]:
    """The config as MLflow params: the plan's record becomes its values and overridden keys.

    The fingerprint and the reasons stay in the `plan.yaml` artifact (params are
    short; Lightning cuts values over 250 characters).

    Example:
        >>> plan_params({"plan": {"mode": "auto", "record": {"values": [
        ...     {"key": "iterations", "value": 6000, "reason": "..."}], "overridden": []}}})
        {'plan': {'mode': 'auto', 'values': {'iterations': 6000}, 'overridden': []}}

    """
    params = copy.deepcopy(config)
    plan = params.get("plan") or {}
    planned = plan.pop("record", None)
    if planned:
        plan["values"] = {v["key"]: v["value"] for v in planned["values"]}
        plan["overridden"] = list(planned.get("overridden", []))
    return params


def record_config(
    params: Any,
    client: Any,
    run_id: str,
    config: dict[str, Any],
    flatten: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """Log a new run's params (:func:`plan_params`), `config.yaml` and, if planned, `plan.yaml`.

    Args:
        params: Lightning's `MLFlowLogger` of the run (writes params at once).
        client: an `MlflowClient`.
        run_id: the MLflow run.
        config: the resolved run config.
        flatten: nested config to `{dotted key: value}` (the tracking room's).

    """
    params.log_hyperparams(flatten(plan_params(config)))
    client.log_dict(run_id, config, "config.yaml")
    planned = (config.get("plan") or {}).get("record")
    if planned:
        client.log_dict(run_id, planned, "plan.yaml")
        client.set_tag(run_id, "plan", "auto")
