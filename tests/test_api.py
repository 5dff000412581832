"""The public API: the verbs in `dacapo_hydra`, used one after another as a notebook would."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import zarr
from skimage import measure

import dacapo_hydra
from dacapo_hydra.data.tools.synthetic import write_synthetic
from tests.conftest import tiny_overrides

VERBS = (
    "compose",
    "train",
    "validate",
    "predict",
    "apply",
    "post_process",
    "export_model",
    "load_model",
    "runs",
)


def test_every_verb_is_public_documented_and_takes_options_by_keyword() -> None:
    assert set(VERBS) <= set(dacapo_hydra.__all__)
    assert {"PredictOptions", "ApplyOptions", "Execution"} <= set(dacapo_hydra.__all__)
    for name in dacapo_hydra.__all__:
        assert getattr(dacapo_hydra, name) is not None
    for name in VERBS:
        verb = getattr(dacapo_hydra, name)
        doc = inspect.getdoc(verb) or ""
        assert "Example:" in doc and f"{name}(" in doc, f"{name}: no example calling it"
        optional = [
            p
            for p in inspect.signature(verb).parameters.values()
            if p.default is not inspect.Parameter.empty
        ]
        # Everything optional is keyword-only, except an output name or a store (one
        # obvious positional each); `compose` keeps the datasplit positional.
        positional = [p.name for p in optional if p.kind != inspect.Parameter.KEYWORD_ONLY]
        assert set(positional) <= {"out_dataset", "tracking_uri", "datasplit"}, (name, positional)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dacapo_hydra.nope  # noqa: B018


def test_the_package_is_typed() -> None:
    assert (Path(dacapo_hydra.__file__).parent / "py.typed").is_file()


@pytest.mark.slow
def test_the_verbs_from_training_to_labels(tmp_path: Path, cache_dir: Path) -> None:
    """compose → train → runs → load_model → validate → predict → post_process → apply → export."""
    cfg = dacapo_hydra.compose(
        "synthetic_3d", task="distance", overrides=tiny_overrides("synthetic_3d", tmp_path)
    )
    result = dacapo_hydra.train(cfg)
    table = dacapo_hydra.runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert list(table.run_id) == [result.run_id]
    assert table.best_score.iloc[0] == pytest.approx(result.best_score)

    model = dacapo_hydra.load_model(result.checkpoint)
    assert not model.training and model.task.criterion == table.criterion.iloc[0]
    validation = dacapo_hydra.validate(model)
    assert validation.best is not None and validation.rows
    assert all(np.isfinite(r.scores[model.task.criterion]) for r in validation.rows)

    volume = write_synthetic(tmp_path / "vol.zarr", dims=3, shape=[30, 60, 60], offset=[0, 0, 0])
    quiet = dacapo_hydra.Execution(progress=False)
    out = tmp_path / "out.zarr"
    predicted = dacapo_hydra.predict(model, volume, "validate/raw", out, execution=quiet)
    assert predicted.blocks_done_now == predicted.blocks > 0
    # A 4-iteration model predicts almost a constant: threshold at its median (nm, by
    # bisection of the task's monotonic scale) so the mask holds objects to compare.
    prediction = zarr.open_group(str(out), mode="r")["prediction/s0"][...]
    lo, hi, median = -1e4, 1e4, float(np.median(prediction))
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if model.task.scale(mid) < median else (lo, mid)
    params = {"threshold": lo}
    labelled = dacapo_hydra.post_process(
        model, out, "prediction", out, params=params, connected_components=True, execution=quiet
    )
    labels = zarr.open_group(labelled.container, mode="r")[f"{labelled.dataset}/s0"][...]
    # Blockwise equals thresholding the whole prediction in memory, then labelling it.
    mask = np.asarray(model.task.post_process(prediction, params)).squeeze() > 0
    count = measure.label(mask, connectivity=1).max()
    assert labelled.objects == count == len(np.unique(labels[labels > 0])) > 0
    assert np.array_equal(labels.squeeze() > 0, mask)

    applied = dacapo_hydra.apply(
        volume,
        "validate/raw",
        tmp_path / "applied.zarr",
        options=dacapo_hydra.ApplyOptions(
            run_id=result.run_id, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"
        ),
        execution=quiet,
    )
    assert applied.params == result.best_params
    exported = dacapo_hydra.export_model(result.checkpoint, tmp_path / "exported")
    assert (exported.folder / "apply.py").is_file()
