"""When a planned run validates and stops: sized to the data, not to a demo.

A validation every pass over the labelled data (at least `MIN_INTERVAL`, at most
`MAX_INTERVAL` iterations, a multiple of 50), training until the validation
criterion has not improved for `PATIENCE` validations, with a ceiling of
`CEILING_VALIDATIONS` validations' worth of iterations. The validation loss uses
as many fixed crops as tile the labelled data once, between 2 and 16.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MIN_INTERVAL = 100
MAX_INTERVAL = 1000
PATIENCE = 8
CEILING_VALIDATIONS = 60
MIN_SAMPLES = 2
MAX_SAMPLES = 16


@dataclass(frozen=True)
class Stopping:
    """Validation interval, patience, iteration ceiling and validation crops, with reasons."""

    validation_interval: int
    patience: int
    iterations: int
    validation_samples: int
    reasons: dict[str, str]


def plan_stopping(labelled_voxels: int, output_shape: Sequence[int], batch_size: int) -> Stopping:
    """The stopping settings for `labelled_voxels` of training data.

    Args:
        labelled_voxels: labelled voxels over the training datasets.
        output_shape: the network's training output, voxels.
        batch_size: crops per iteration.

    Example:
        >>> s = plan_stopping(96**3, (44, 44, 44), 2)
        >>> s.validation_interval, s.patience, s.iterations, s.validation_samples
        (100, 8, 6000, 10)

    """
    crop = math.prod(output_shape)
    epoch = labelled_voxels / max(1, crop * batch_size)
    interval = int(min(MAX_INTERVAL, max(MIN_INTERVAL, 50 * round(epoch / 50))))
    samples = int(min(MAX_SAMPLES, max(MIN_SAMPLES, round(labelled_voxels / crop))))
    iterations = CEILING_VALIDATIONS * interval
    return Stopping(
        validation_interval=interval,
        patience=PATIENCE,
        iterations=iterations,
        validation_samples=samples,
        reasons={
            "validation_interval": (
                f"a pass over the labelled data is {epoch:.1f} iterations of {batch_size} "
                f"crops; kept within {MIN_INTERVAL}-{MAX_INTERVAL}"
            ),
            "patience": f"stop after {PATIENCE} validations without improvement",
            "iterations": f"a ceiling: {CEILING_VALIDATIONS} validations",
            "validation_samples": (
                f"crops that tile the labelled data once, within {MIN_SAMPLES}-{MAX_SAMPLES}"
            ),
        },
    )
