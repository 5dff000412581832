"""Benchmark the data-derived plan against today's defaults and StarDist, same wall time.

For each datasplit (synthetic data at several voxel sizes: `nuclei_2d_325nm`,
`nuclei_3d_2000x400nm`, `cells_3d_8nm`, `cells_3d_40x4nm`; each container has a
held-out `test/raw` that training and validation never read) and each task:

- arm `plan`: `python train.py datasplit=X task=T` and nothing else (plus `budget=` when
  the config has a `budget` key), i.e. what a new user types. Run only where a plan
  exists (a `plan` config group or key composes); otherwise the JSON says it was skipped
  and why.
- arm `defaults`: today's defaults (`plan=none` where a plan exists) with `iterations`
  raised so that the run fills the same wall time: with a `budget` key the run stops
  itself; without one the bench sends SIGTERM at the budget (the run saves `last.ckpt`
  and keeps its best checkpoint; the warm-up schedule does not depend on `iterations`,
  so this is the same as having set the right `iterations` up front).

Each run is applied with `dacapo-apply --run-id` to the held-out volume and scored
(`dacapo_hydra.evaluation.instance_scores`: matched-detection F1 at IoU 0.5, mAP over
IoU 0.5:0.95, adapted Rand error; and scikit-image's own `adapted_rand_error`), against
the truth's object count; the wall time to the best checkpoint comes from the MLflow
record. The peer, for the nuclei, is StarDist trained from scratch for the same wall
time in a virtual environment of its own (`--stardist-venv`, created on first use with
`tensorflow-cpu` and `stardist`, never a dependency of this project), run by
`scripts/bench_plan_stardist.py`; its labels are scored the same way.

    nice -n 10 python scripts/bench_plan.py --datasplits nuclei_2d_325nm \\
        --tasks affinities --budget 4min --out bench_plan.json

Prints one JSON object; `--out` also writes it (atomically). Not a test: the figures
depend on the machine and the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_plan_peer as peer  # noqa: E402  (the scripts folder is not a package)

ROOT = Path(__file__).resolve().parents[1]
DATASPLITS = ("nuclei_2d_325nm", "nuclei_3d_2000x400nm", "cells_3d_8nm", "cells_3d_40x4nm")
TASKS = ("affinities", "distance_instances")
GRACE_S = 180  # a stopped run's last checkpoint and MLflow record: time to land


def parse_budget(text: str) -> float:
    """Seconds in a budget such as `300`, `90s`, `5min`, `1.5h`.

    Example:
        >>> parse_budget("5min"), parse_budget("90s"), parse_budget("1h")
        (300.0, 90.0, 3600.0)

    """
    match = re.fullmatch(r"\s*([0-9.]+)\s*(s|sec|m|min|h)?\s*", text)
    if not match:
        raise SystemExit(f"bench_plan: --budget {text!r}: expected e.g. 300, 90s, 5min, 1h")
    factor = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[match.group(2)]
    return float(match.group(1)) * factor


def plan_support(datasplit: str, task: str) -> dict[str, Any]:
    """What the config offers today: a plan (group or key) and a `budget` run setting."""
    from dacapo_hydra.api import compose, config_dir

    cfg = compose(datasplit=datasplit, task=task)
    plan = (config_dir() / "plan").is_dir() or "plan" in cfg
    return {
        "plan": bool(plan),
        "budget": "budget" in cfg,
        "why_not": None
        if plan
        else "no plan in the config (neither conf/plan/ nor a `plan` key composes): "
        "the planner of issue 23 is not on this branch yet",
    }


def dataset_paths(datasplit: str, data_dir: Path) -> dict[str, Any]:
    """The datasplit's container (generated now if missing) and its held-out test arrays."""
    from dacapo_hydra.api import compose
    from dacapo_hydra.data.datasplit import DataSplit

    cfg = compose(datasplit=datasplit, overrides=[f"paths.data_dir={data_dir}"])
    DataSplit.from_config(cfg.datasplit)  # generates the synthetic container
    synthetic = cfg.datasplit.synthetic
    container = Path(str(synthetic.container))
    if "test" not in zarr.open_group(str(container), mode="r"):
        raise SystemExit(f"bench_plan: {container} has no held-out test/ volume")
    return {
        "container": container,
        "dims": int(cfg.datasplit.dims),
        "kind": str(synthetic.kind),
        "voxel_size": [float(v) for v in synthetic.voxel_size],
    }


def read_split(container: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw, labels and mask (s0) of one split of a synthetic container."""
    root = zarr.open_group(str(container), mode="r")
    return (
        root[f"{split}/raw/s0"][:],
        root[f"{split}/raw/labels/labels/s0"][:],
        root[f"{split}/raw/labels/mask/s0"][:],
    )


def score(labels: np.ndarray, gt: np.ndarray, mask: np.ndarray, voxel_size: list[float]) -> dict:
    """Objects vs truth, F1 at IoU 0.5, mAP, adapted Rand error (ours and scikit-image's)."""
    from skimage.metrics import adapted_rand_error

    from dacapo_hydra.evaluation.instance import instance_scores

    annotated = mask > 0
    labels = np.where(annotated, labels, 0).astype(np.uint64)
    ours = instance_scores(labels, gt, mask, voxel_size)
    are, _, _ = adapted_rand_error(gt[annotated], labels[annotated])
    keep = (
        "detection_f1",
        "detection_precision",
        "detection_recall",
        "mean_average_precision",
        "adapted_rand_error",
        "voi_split",
        "voi_merge",
    )
    return {
        "objects": int(np.count_nonzero(np.unique(labels))),
        "objects_true": int(np.count_nonzero(np.unique(gt[annotated]))),
        **{k: round(float(ours[k]), 4) for k in keep},
        "adapted_rand_error_skimage": round(float(are), 4),
    }


def train_run(overrides: list[str], out: Path, budget_s: float, stop_at: float | None) -> dict:
    """`python train.py <overrides>` in its own output folder; SIGTERM at `stop_at` seconds."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(ROOT / "train.py"), *overrides, f"paths.output_dir={out}"]
    started = time.perf_counter()
    with open(out / "train.log", "w") as log:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        stopped = False
        try:
            proc.wait(timeout=stop_at if stop_at is not None else budget_s + 3 * GRACE_S)
        except subprocess.TimeoutExpired:
            stopped = True
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return {
        "command": "python train.py " + " ".join(overrides),
        "returncode": proc.returncode,
        "stopped_by_bench": stopped,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "tracking_uri": f"sqlite:///{out / 'mlflow.db'}",
        "log": str(out / "train.log"),
    }


def logged_iterations(log: Path) -> int:
    """The iterations a run's closing line reports (`finished N iterations`, `at iteration N`).

    MLflow has `train/loss` only every `log_every_n_steps`; the closing line is exact.
    """
    text = log.read_text(errors="replace") if log.exists() else ""
    found = re.findall(r"(?:finished (\d+) iterations|at iteration (\d+):)", text)
    return max((int(a or b) for a, b in found), default=0)


def run_record(tracking_uri: str) -> dict[str, Any]:
    """The store's one run: id, iterations, best record, time to best, stop tags."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, order_by=["attributes.start_time DESC"])
    if not runs:
        raise RuntimeError(f"no MLflow run in {tracking_uri}")
    run = runs[0]
    tags = run.data.tags
    criterion = tags.get("criterion")
    best = json.loads(tags[f"best.{criterion}"]) if f"best.{criterion}" in tags else None
    to_best = None
    if best is not None:
        history = client.get_metric_history(run.info.run_id, f"validation/{criterion}")
        at = [m.timestamp for m in history if m.step == best["iteration"]]
        to_best = round((at[0] - run.info.start_time) / 1000, 1) if at else None
    steps = client.get_metric_history(run.info.run_id, "train/loss")
    return {
        "run_id": run.info.run_id,
        "status": run.info.status,
        "iterations": max((m.step for m in steps), default=0),
        "criterion": criterion,
        "best": best,
        "seconds_to_best_checkpoint": to_best,
        "stop_tags": {k: v for k, v in tags.items() if "stop" in k},
    }


def apply_and_score(record: dict, train: dict, data: dict[str, Any], work: Path) -> dict:
    """`dacapo-apply --run-id` on the held-out test volume, then the scores."""
    out = work / "applied.zarr"
    command = [
        str(Path(sys.executable).with_name("dacapo-apply")),
        "--run-id",
        record["run_id"],
        "--tracking-uri",
        train["tracking_uri"],
        "--input",
        str(data["container"]),
        "test/raw",
        "--output",
        str(out),
        "--overwrite",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {"apply_error": tail[0]}
    labels = zarr.open_group(str(out), mode="r")["prediction/labels/labels/s0"][:]
    labels = labels[0] if labels.ndim == data["dims"] + 1 else labels
    _, gt, mask = read_split(data["container"], "test")
    return {
        "apply_seconds": round(time.perf_counter() - started, 1),
        **score(labels, gt, mask, data["voxel_size"]),
    }


def bench_arm(
    arm: str, datasplit: str, task: str, support: dict, budget_s: float, data: dict, work: Path
) -> dict:
    """Train one arm for the budget, apply it to the test volume, score it."""
    overrides = [f"datasplit={datasplit}", f"task={task}", f"paths.data_dir={work / 'data'}"]
    if arm == "defaults":
        overrides += (["plan=none"] if support["plan"] else []) + ["iterations=1000000"]
    overrides += [f"budget={budget_s:g}"] if support["budget"] else []  # seconds
    # With a budget setting the run stops itself (SIGTERM only past a grace period).
    stop_at = budget_s + GRACE_S if support["budget"] else budget_s
    folder = work / datasplit / task / arm
    train = train_run(overrides, folder / "outputs", budget_s, stop_at)
    try:
        record = run_record(train["tracking_uri"])
    except Exception as err:  # a run that never started: its log says why
        return {"train": train, "error": f"{type(err).__name__}: {err}"}
    record["iterations"] = max(record["iterations"], logged_iterations(Path(train["log"])))
    if record["best"] is None:
        return {"train": train, **record, "error": "not validated within the budget"}
    return {"train": train, **record, "test": apply_and_score(record, train, data, folder)}


def bench_peer(datasplit: str, data: dict, budget_s: float, venv: Path, work: Path) -> dict:
    """StarDist from scratch on the same train/validate volumes, scored on the test volume."""
    if data["kind"] != "nuclei":
        return {"skipped": "StarDist is the peer for nuclei only (star-convex objects)"}
    try:
        python = peer.ensure_venv(venv)
    except peer.PeerUnavailable as err:
        print(f"bench_plan: StarDist skipped: {err}", file=sys.stderr)
        return {"skipped": str(err)}
    folder = work / datasplit / "stardist"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validate", "test"):
        raw, labels, _ = read_split(data["container"], split)
        np.save(folder / f"{split}_raw.npy", raw)
        np.save(folder / f"{split}_labels.npy", labels)
    result = peer.run_driver(python, folder, data["voxel_size"], budget_s)
    if "error" in result:
        return result
    _, gt, mask = read_split(data["container"], "test")
    labels = np.load(folder / "test_pred.npy")
    return {**result, "test": score(labels, gt, mask, data["voxel_size"])}


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` under a temporary name, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasplits", nargs="+", default=list(DATASPLITS))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--budget", default="5min", help="wall time per run: 300, 90s, 5min")
    parser.add_argument("--arms", nargs="+", default=["plan", "defaults"])
    parser.add_argument("--out", type=Path, help="also write the JSON here (atomically)")
    parser.add_argument("--skip-peer", action="store_true", help="no StarDist")
    parser.add_argument("--workdir", type=Path, help="runs, data, applied labels (default: tmp)")
    parser.add_argument("--stardist-venv", type=Path, default=peer.DEFAULT_VENV)
    args = parser.parse_args(argv)
    budget_s = parse_budget(args.budget)
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="bench_plan_"))).resolve()
    data_dir = work / "data"
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible, {platform.node()}",
        "budget_seconds": budget_s,
        "workdir": str(work),
        "results": {},
    }
    started = time.perf_counter()
    for datasplit in args.datasplits:
        data = dataset_paths(datasplit, data_dir)
        entry: dict[str, Any] = {"voxel_size": data["voxel_size"], "kind": data["kind"]}
        for task in args.tasks:
            support = plan_support(datasplit, task)
            arms: dict[str, Any] = {}
            for arm in args.arms:
                if arm == "plan" and not support["plan"]:
                    arms[arm] = {"skipped": support["why_not"]}
                    continue
                print(f"bench_plan: {datasplit} {task} {arm}", file=sys.stderr)
                arms[arm] = bench_arm(arm, datasplit, task, support, budget_s, data, work)
            entry[task] = {"config": support, **arms}
        if not args.skip_peer:
            print(f"bench_plan: {datasplit} StarDist", file=sys.stderr)
            entry["stardist"] = bench_peer(datasplit, data, budget_s, args.stardist_venv, work)
        _, gt, mask = read_split(data["container"], "test")
        entry["test_objects_true"] = int(np.count_nonzero(np.unique(gt[mask > 0])))
        report["results"][datasplit] = entry
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        write_atomic(args.out, text + "\n")
    print(text)


if __name__ == "__main__":
    main()
