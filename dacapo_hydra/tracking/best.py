"""Best validation results as MLflow tags: a run's per criterion, and a sweep's best child.

A run's best result for a criterion is the JSON tag `best.<criterion>` (iteration,
score, post-processing parameters); the tag `criterion` names the task's default
criterion. A sweep's parent run gets its best child (tags `best_child*`, a metric
per criterion and a note the UI shows first).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from dacapo_hydra.tracking.tags import DIRECTION_TAG

BEST_TAG_PREFIX = "best."
CRITERION_TAG = "criterion"


def record_best(
    client: Any, run_id: str, criterion: str, record: dict[str, Any], default: bool = False
) -> None:
    """Record the best validation result for `criterion` as a JSON tag `best.<criterion>`.

    Args:
        client: an `MlflowClient`.
        run_id: the run.
        criterion: the score's name.
        record: at least `iteration`, `score`, `params` (the post-processing parameters).
        default: also tag `criterion` with this name (the task's default criterion).

    """
    client.set_tag(run_id, f"{BEST_TAG_PREFIX}{criterion}", json.dumps(record, sort_keys=True))
    if default:
        client.set_tag(run_id, CRITERION_TAG, criterion)


def read_best(tracking_uri: str, run_id: str, criterion: str | None = None) -> dict[str, Any]:
    """The best validation record of a run for `criterion` (default: the task's criterion).

    Returns:
        The record written by :func:`record_best`, with `criterion` added.

    Raises:
        KeyError: naming the run and the criteria it has records for.

    """
    from mlflow.tracking import MlflowClient

    tags = MlflowClient(tracking_uri).get_run(run_id).data.tags
    criterion = criterion or tags.get(CRITERION_TAG)
    key = f"{BEST_TAG_PREFIX}{criterion}"
    if criterion is None or key not in tags:
        have = sorted(
            k.removeprefix(BEST_TAG_PREFIX) for k in tags if k.startswith(BEST_TAG_PREFIX)
        )
        raise KeyError(
            f"MLflow run {run_id} has no validation result for criterion {criterion!r}; "
            f"it has: {', '.join(have) or 'none (was it validated?)'}"
        )
    return {**json.loads(tags[key]), "criterion": criterion}


def _child_score(run: Any) -> tuple[str, float, bool] | None:
    """(criterion, best score, higher is better) of a child run, or its val/loss."""
    tags = run.data.tags
    criterion = tags.get(CRITERION_TAG)
    if criterion and f"{BEST_TAG_PREFIX}{criterion}" in tags:
        score = float(json.loads(tags[f"{BEST_TAG_PREFIX}{criterion}"])["score"])
        return criterion, score, tags.get(DIRECTION_TAG, "true") == "true"
    if "val/loss" in run.data.metrics:
        return "val/loss", float(run.data.metrics["val/loss"]), False
    return None


def record_best_child(tracking_uri: str, parent_id: str) -> dict[str, Any] | None:
    """Find a sweep's best child and record it on the parent run.

    Children are compared on their task's criterion (`best.<criterion>` tags);
    when children differ in criterion (a sweep over tasks), scores of different
    criteria are not compared: each criterion gets its best child (tag
    `best_child.<criterion>`, its run name), and `best_child` is the best on the
    criterion most children share (ties: the criterion of the first child). Children
    without a validation score compare on `val/loss`. The parent gets the tags
    `best_child` (run id), `best_child.name`, `best_child.criterion`,
    `best_child.score`, a metric `validation/best_child/<criterion>` per criterion
    (after the loss curves in MLflow's charts, which sort sections by name), and a
    note (`mlflow.note.content`) that the UI shows first.

    Returns:
        `{"run_id", "name", "criterion", "score"}` of the best child, or None.

    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    scored = [(run, s) for run in children if (s := _child_score(run)) and math.isfinite(s[1])]
    if not scored:
        return None
    best_per: dict[str, tuple[Any, float]] = {}
    for run, (criterion, score, higher) in scored:
        held = best_per.get(criterion)
        if held is None or (score > held[1] if higher else score < held[1]):
            best_per[criterion] = (run, score)
    criterion = Counter(s[0] for _, s in scored).most_common(1)[0][0]
    run, score = best_per[criterion]
    best = {
        "run_id": run.info.run_id,
        "name": run.info.run_name,
        "criterion": criterion,
        "score": score,
    }
    client.set_tag(parent_id, "best_child", best["run_id"])
    client.set_tag(parent_id, "best_child.name", best["name"])
    client.set_tag(parent_id, "best_child.criterion", criterion)
    client.set_tag(parent_id, "best_child.score", f"{score:.6g}")
    for name, (child, value) in best_per.items():
        key = name.replace("/", "_")
        client.log_metric(parent_id, f"validation/best_child/{key}", value)
        client.set_tag(parent_id, f"best_child.{key}", child.info.run_name)
    note = _note(parent, len(children), best, best_per)
    client.set_tag(parent_id, "mlflow.note.content", note)
    return best


def _note(
    parent: Any, count: int, best: dict[str, Any], best_per: dict[str, tuple[Any, float]]
) -> str:
    """The parent run's note: what the sweep varied, its best child, the best per criterion."""
    axes = parent.data.tags.get("sweep.axes", "")
    note = (
        f"Sweep over {axes or 'its jobs'} ({count} runs). Best child: "
        f"**{best['name']}** ({best['criterion']} {best['score']:.4g}), run `{best['run_id']}`."
    )
    if len(best_per) > 1:
        note += " Best per criterion (not comparable across criteria): " + "; ".join(
            f"{name}: **{child.info.run_name}** ({value:.4g})"
            for name, (child, value) in best_per.items()
        )
    return note
