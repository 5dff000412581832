"""`scripts/bench_plan.py`: its budget grammar, scores, plan detection and the peer's venv."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import bench_plan  # noqa: E402
import bench_plan_peer  # noqa: E402


def test_budget_grammar() -> None:
    assert bench_plan.parse_budget("5min") == 300.0
    assert bench_plan.parse_budget("90s") == 90.0
    assert bench_plan.parse_budget("120") == 120.0
    with pytest.raises(SystemExit, match="--budget"):
        bench_plan.parse_budget("five minutes")


def test_scores_count_objects_and_only_annotated_voxels() -> None:
    gt = np.zeros((32, 32), np.uint64)
    gt[2:10, 2:10], gt[15:25, 15:25] = 1, 2
    mask = np.ones_like(gt, np.uint8)
    mask[:, 28:] = 0
    pred = gt.copy()
    pred[:, 29:] = 7  # outside the mask: not seen
    scores = bench_plan.score(pred, gt, mask, [325.0, 325.0])
    assert scores["objects"] == scores["objects_true"] == 2
    assert scores["detection_f1"] == 1.0 and scores["mean_average_precision"] == 1.0
    assert scores["adapted_rand_error"] == scores["adapted_rand_error_skimage"] == 0.0
    split = gt.copy()
    split[2:10, 6:10] = 3  # one object in two halves
    halves = bench_plan.score(split, gt, mask, [325.0, 325.0])
    assert halves["objects"] == 3 and halves["detection_f1"] < 1.0
    assert halves["adapted_rand_error_skimage"] > 0.0


def test_plan_detection_says_why_an_arm_is_skipped() -> None:
    support = bench_plan.plan_support("nuclei_2d_325nm", "affinities")
    assert set(support) == {"plan", "budget", "why_not"}
    if not support["plan"]:
        assert "no plan" in support["why_not"]


def test_peer_venv_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")  # exists, but cannot import stardist

    def fake_run(command: list[str], **_: Any) -> subprocess.CompletedProcess:
        stderr = (
            "WARNING: Location 'x' is ignored\n"
            "ERROR: Could not find a version that satisfies the requirement tensorflow-cpu\n"
            "ERROR: No matching distribution found for tensorflow-cpu==2.15.1\n"
        )
        return subprocess.CompletedProcess(command, 1, "", stderr)

    monkeypatch.setattr(bench_plan_peer.subprocess, "run", fake_run)
    with pytest.raises(bench_plan_peer.PeerUnavailable) as err:
        bench_plan_peer.ensure_venv(venv)
    message = str(err.value)
    assert "\n" not in message
    assert "No matching distribution found for tensorflow-cpu==2.15.1" in message


@pytest.mark.slow
def test_bench_runs_the_defaults_arm_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        str(REPO / "scripts" / "bench_plan.py"),
        "--datasplits",
        "nuclei_2d_325nm",
        "--tasks",
        "affinities",
        "--arms",
        "defaults",
        "--budget",
        "150s",
        "--skip-peer",
        "--workdir",
        str(tmp_path / "work"),
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    printed = json.loads(done.stdout)
    assert json.loads(out.read_text()) == printed
    entry = printed["results"]["nuclei_2d_325nm"]["affinities"]["defaults"]
    assert entry["train"]["wall_seconds"] < 150 + bench_plan.GRACE_S
    assert "detection_f1" in entry["test"], entry
