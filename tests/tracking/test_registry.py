"""Registered versions get a description; the alias `best` follows the best score."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from dacapo_hydra.tracking.registry import describe_version, version_description
from dacapo_hydra.tracking.store import ensure_experiment


def test_versions_are_described_and_aliased(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = ensure_experiment(uri, "registry", (tmp_path / "artifacts").as_uri())
    client = MlflowClient(uri)
    client.create_registered_model("cells")
    runs = [client.create_run(experiment).info.run_id for _ in range(3)]
    for run_id in runs:
        client.create_model_version("cells", f"runs:/{run_id}/model", run_id=run_id)
    description = version_description(
        {"datasplit": "synthetic_3d", "task": "affinities"}, "dice", 0.8, 300, (8.0, 4.0, 4.0), "r"
    )
    assert description == (
        "datasplit synthetic_3d, task affinities; dice 0.8 at iteration 300; "
        "voxel size 8×4×4 nm; run r"
    )
    assert describe_version(uri, "cells", runs[0], description, "dice", 0.8, True) == "1"
    describe_version(uri, "cells", runs[1], "worse", "dice", 0.5, True)
    model = client.get_registered_model("cells")
    assert model.aliases == {"best": 1}
    assert model.description == f"dacapo-hydra network; best: version 1, {description}"
    assert client.get_model_version("cells", "1").description == description
    assert client.get_model_version("cells", "2").tags == {
        "criterion": "dice",
        "higher_is_better": "true",
        "score": "0.5",
    }
    describe_version(uri, "cells", runs[2], "better", "dice", 0.9, True)
    assert client.get_registered_model("cells").aliases == {"best": 3}
