"""Scores of several classes (or channels) under one set of names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def merge_class_scores(per_class: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """One dict of scores: the mean over classes under each score's plain name.

    With more than one class, each class's own scores are kept too, as
    `<class>/<score>`.
    """
    names = list(per_class)
    if not names:
        raise ValueError("evaluation: no classes to score")
    metrics = list(per_class[names[0]])
    merged = {m: float(np.mean([per_class[n][m] for n in names])) for m in metrics}
    if len(names) > 1:
        for n in names:
            merged.update({f"{n}/{m}": float(v) for m, v in per_class[n].items()})
    return merged


def class_score_directions(names: Sequence[str], directions: Mapping[str, bool]) -> dict[str, bool]:
    """Directions of every score `merge_class_scores` returns for these classes."""
    out = dict(directions)
    if len(names) > 1:
        for n in names:
            out.update({f"{n}/{m}": up for m, up in directions.items()})
    return out
