"""Benchmark instance segmentation on synthetic light-microscopy nuclei, end to end.

For the nuclei datasplits (2D 256² at 250 nm, 3D 32x160x160 at 1000x250x250 nm,
crowded touching uint16 nuclei: `dacapo_hydra.data.tools.synthetic_nuclei`) and each task
(`affinities`, `distance_instances`): train with the defaults (unet_tiny, default
trainer) for `--iterations-2d`/`--iterations-3d` steps (about 10 minutes each on 2
CPU cores at the defaults), then `dacapo-apply --run-id` (the Python `apply`) on the
held-out validation volume, and score the applied labels with scikit-image and a
one-to-one (Hungarian) IoU matching. The baseline is Otsu + distance-transform
watershed (scikit-image) on the same volume.

Prints one JSON document: per (dims, task) the applied labels' F1 at IoU 0.5, mean AP
(IoU 0.5:0.95), adapted Rand error, VOI split/merge (scikit-image's own functions),
objects vs truth, the parameters validation chose, and the run's logged `validation/best/*`
scores next to the same scores recomputed on the applied labels (they should agree);
the baseline's figures; and the goals (F1 >= 0.85 in 2D, >= 0.75 in 3D, >= 2x the
baseline). Not a test: figures depend on the machine and the training time.

    python scripts/bench_instances.py [--tasks affinities distance_instances] [--dims 2 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.metrics import adapted_rand_error, variation_of_information
from skimage.segmentation import watershed

GOALS = {"2": 0.85, "3": 0.75}


def skimage_scores(labels: np.ndarray, gt: np.ndarray, voxel_size: tuple[float, ...]) -> dict:
    """Scores of applied labels, by scikit-image and by the project's matching."""
    from dacapo_hydra.evaluation.instance import instance_scores

    split, merge = variation_of_information(gt, labels)
    are, _, _ = adapted_rand_error(gt, labels)
    ours = instance_scores(labels, gt, None, voxel_size)
    return {
        "objects": int(len(np.unique(labels)) - (labels == 0).any()),
        "objects_true": int(len(np.unique(gt)) - (gt == 0).any()),
        "detection_f1": ours["detection_f1"],
        "detection_precision": ours["detection_precision"],
        "detection_recall": ours["detection_recall"],
        "mean_average_precision": ours["mean_average_precision"],
        "adapted_rand_error_skimage": float(are),
        "voi_split_skimage": float(split),
        "voi_merge_skimage": float(merge),
        "adapted_rand_error": ours["adapted_rand_error"],
        "voi_split": ours["voi_split"],
        "voi_merge": ours["voi_merge"],
    }


def baseline(
    raw: np.ndarray, voxel_size: tuple[float, ...], radius_nm: float | None = None
) -> np.ndarray:
    """Otsu threshold, distance transform, its peaks as seeds, watershed.

    Without `radius_nm` this is scikit-image's own watershed example (peaks in a
    3-voxel footprint); with it, peaks at least half the true radius apart (a
    baseline tuned with knowledge of the answer, reported for reference).
    """
    foreground = raw > threshold_otsu(raw)
    distance = ndimage.distance_transform_edt(foreground, sampling=voxel_size)
    if radius_nm is None:
        footprint = np.ones((3,) * raw.ndim, bool)
        peaks = peak_local_max(distance, footprint=footprint, labels=foreground)
    else:
        min_distance = max(1, int(round(0.5 * radius_nm / max(voxel_size))))
        peaks = peak_local_max(distance, min_distance=min_distance, labels=foreground)
    markers = np.zeros(raw.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=foreground).astype(np.uint64)


def run_one(dims: int, task: str, iterations: int, work: Path, extra: list[str]) -> dict:
    from mlflow.tracking import MlflowClient

    from dacapo_hydra.api import compose
    from dacapo_hydra.inference.apply import apply
    from dacapo_hydra.inference.options import ApplyOptions, Execution
    from dacapo_hydra.training.run import train

    interval = max(1, iterations // 5)
    cfg = compose(
        datasplit=f"nuclei_{dims}d",
        task=task,
        overrides=[
            f"paths.output_dir={work / 'outputs'}",
            f"paths.data_dir={work / 'data'}",
            f"iterations={iterations}",
            f"validation_interval={interval}",
            "write_validation=false",
            *extra,
        ],
    )
    started = time.perf_counter()
    result = train(cfg)
    trained = time.perf_counter() - started
    container = str(work / "data" / f"nuclei_{dims}d.zarr")
    out = work / f"applied_{dims}d_{task}.zarr"
    applied = apply(
        container,
        "validate/raw",
        out,
        options=ApplyOptions(run_id=result.run_id, tracking_uri=result.tracking_uri),
        execution=Execution(progress=False),
    )
    labels = zarr.open_group(str(out))[f"{applied.labels[1]}/s0"][:]
    labels = labels[0] if labels.ndim == dims + 1 else labels
    gt = zarr.open_group(container)["validate/raw/labels/labels/s0"][:]
    scores = skimage_scores(labels, gt, applied.voxel_size)
    logged = MlflowClient(result.tracking_uri).get_run(result.run_id).data.metrics
    return {
        "train_seconds": round(trained, 1),
        "iterations": result.iterations,
        "params": applied.params,
        "applied": scores,
        "logged_best": {
            k.removeprefix("validation/best/"): v
            for k, v in logged.items()
            if k.removeprefix("validation/best/")
            in ("detection_f1", "mean_average_precision", "adapted_rand_error", "voi_split")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["affinities", "distance_instances"])
    parser.add_argument("--dims", nargs="+", type=int, default=[2, 3])
    parser.add_argument("--iterations-2d", type=int, default=3000)
    parser.add_argument("--iterations-3d", type=int, default=1500)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides for every run, e.g. architecture=unet_small"
    )
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_instances_"))
    report: dict = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "goals": {"detection_f1_2d": 0.85, "detection_f1_3d": 0.75, "vs_baseline": 2.0},
        "overrides": args.overrides,
        "results": {},
    }
    for dims in args.dims:
        iterations = args.iterations_2d if dims == 2 else args.iterations_3d
        for task in args.tasks:
            key = f"{dims}d/{task}"
            with contextlib.redirect_stdout(sys.stderr):  # the JSON alone on stdout
                report["results"][key] = run_one(dims, task, iterations, work, args.overrides)
            print(f"bench_instances: {key} done", file=sys.stderr)
        from dacapo_hydra.data.statistics import object_radii

        container = zarr.open_group(str(work / "data" / f"nuclei_{dims}d.zarr"))
        raw = container["validate/raw/s0"][:]
        gt = container["validate/raw/labels/labels/s0"][:]
        voxel_size = (250.0,) * 2 if dims == 2 else (1000.0, 250.0, 250.0)
        radius = float(np.median(object_radii(gt, voxel_size)))
        base = skimage_scores(baseline(raw, voxel_size), gt, voxel_size)
        report["results"][f"{dims}d/baseline_otsu_watershed"] = {"applied": base}
        tuned = skimage_scores(baseline(raw, voxel_size, radius), gt, voxel_size)
        report["results"][f"{dims}d/baseline_otsu_watershed_true_radius"] = {"applied": tuned}
        for task in args.tasks:
            entry = report["results"][f"{dims}d/{task}"]
            f1 = entry["applied"]["detection_f1"]
            entry["goal_met"] = bool(f1 >= GOALS[str(dims)] and f1 >= 2 * base["detection_f1"])
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
