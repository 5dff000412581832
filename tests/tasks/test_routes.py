"""Post-processing routes as objects: listed in the task's YAML, swept by the task base."""

from __future__ import annotations

from pathlib import Path

import hydra.utils
import numpy as np
import pytest
from omegaconf import OmegaConf

from dacapo_hydra.api import compose, config_dir
from dacapo_hydra.errors import ConfigError
from dacapo_hydra.tasks.affinities import AffinitiesTask
from dacapo_hydra.tasks.instances.agglomeration import AffinityGraph
from dacapo_hydra.tasks.instances.mutex_watershed import MutexWatershed
from dacapo_hydra.tasks.instances.route import check_route_nodes
from dacapo_hydra.tasks.instances.size_filter import remove_small
from dacapo_hydra.training.build import build
from dacapo_hydra.trust import UntrustedCheckpoint, check_stored_config
from tests.tasks.test_instances import touching_discs
from tests.tasks.toy_route import ThresholdComponents

VS = (4.0, 4.0)
RADIUS = 40.0
TOY_LINE = "  - _target_: tests.tasks.toy_route.ThresholdComponents"


def build_task(cfg_task: object) -> AffinitiesTask:
    return hydra.utils.instantiate(cfg_task, dims=2, voxel_size=list(VS), object_radius=RADIUS)


def noisy_affinities(task: AffinitiesTask) -> np.ndarray:
    gt = touching_discs()
    affs, _ = task.affinities(gt, np.ones(gt.shape))
    noise = np.random.default_rng(0).normal(0, 0.1, affs.shape)
    return np.clip(affs * 0.8 + 0.1 + noise, 0, 1).astype(np.float32)


@pytest.fixture
def toy_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A user config folder whose `task/affinities_toy.yaml` is the stock YAML plus one line."""
    stock = (config_dir() / "task" / "affinities.yaml").read_text().splitlines()
    last_route = max(i for i, line in enumerate(stock) if line.startswith("  "))
    lines = [*stock[: last_route + 1], TOY_LINE, *stock[last_route + 1 :]]
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "affinities_toy.yaml").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("DACAPO_CONFIG_DIR", str(tmp_path))
    return lines


def test_the_stock_routes_are_the_tasks_defaults() -> None:
    composed = build_task(compose(task="affinities").task)
    default = AffinitiesTask(2, VS, object_radius=RADIUS)
    assert [r.name for r in composed.routes] == ["mutex", "agglomeration", "mask"]
    assert composed.parameter_grid() == default.parameter_grid()
    grid = default.parameter_grid()
    assert grid[0] == {"route": "mutex", "bias": 0.3, "min_size": 0}
    assert {"route": "agglomeration", "threshold": 0.7, "min_size": default.min_sizes[-1]} in grid
    assert [p["h"] for p in grid if p["route"] == "mask" and p["min_size"] == 0] == [
        1.0,
        2.0,
        4.0,
    ]


def test_a_toy_route_is_one_module_and_one_yaml_line(toy_config_dir: list[str]) -> None:
    stock = (config_dir() / "task" / "affinities.yaml").read_text().splitlines()
    assert [line for line in toy_config_dir if line not in stock] == [TOY_LINE]
    task = build_task(compose(task="affinities_toy").task)
    stock_task = build_task(compose(task="affinities").task)
    prediction = noisy_affinities(task)
    grid = list(task.post_process_grid(prediction))
    assert [p for p, _ in grid] == task.parameter_grid()
    toy = [(p, out) for p, out in grid if p["route"] == "threshold"]
    assert [p for p, _ in toy] == [
        {"route": "threshold", "level": 0.6, "min_size": m} for m in task.min_sizes
    ]
    expected = ThresholdComponents().run(prediction, {"level": 0.6}, task.route_spec)
    assert expected.max() == 2  # the level separates the two discs: a real segmentation
    for params, out in toy:
        np.testing.assert_array_equal(out, remove_small(expected, int(params["min_size"])))
        np.testing.assert_array_equal(out, task.post_process(prediction, params))
        assert task.graph_route(params) is None  # blockwise: per block, matched across faces
    # The stock routes are untouched by the new one.
    others = [(p, out) for p, out in grid if p["route"] != "threshold"]
    for (p, out), (q, ref) in zip(others, stock_task.post_process_grid(prediction), strict=True):
        assert p == q
        np.testing.assert_array_equal(out, ref)


def test_a_stored_config_builds_only_the_librarys_routes(toy_config_dir: list[str]) -> None:
    stock = OmegaConf.to_container(compose(task="affinities").task)
    check_stored_config({"config": {"task": stock}, "meta": {}}, "ckpt")
    toy = OmegaConf.to_container(compose(task="affinities_toy").task)
    with pytest.raises(UntrustedCheckpoint, match=r"task\.routes\[3\]\._target_ names 'tests"):
        check_stored_config({"config": {"task": toy}, "meta": {}}, "ckpt")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task.routes.0.biases=[1.5]", r"task\.routes\[0\]\.biases: need values in \(0, 1\)"),
        ("+task.routes.1.thresholdz=[0.5]", r"task\.routes\[1\]\.thresholdz: .* takes no argument"),
        (
            "task.routes.2._target_=dacapo_hydra.tasks.affinities.AffinitiesTask",
            r"task\.routes\[2\]\._target_: .* is not a .*Route",
        ),
        ("task.routes.2.h=[]", r"task\.routes\[2\]\.h: need at least one value"),
    ],
)
def test_a_bad_route_names_its_key(override: str, message: str) -> None:
    cfg = compose(task="affinities", overrides=[override])
    with pytest.raises(ConfigError, match=message):
        check_route_nodes(cfg.task)
    with pytest.raises(ConfigError, match=message):
        build(cfg)  # the run checks the routes before it opens the data


def test_routes_are_looked_up_by_name_and_answer_blockwise() -> None:
    task = AffinitiesTask(2, VS, routes=[MutexWatershed([0.4])], min_sizes=[0])
    assert task.parameter_grid() == [{"route": "mutex", "bias": 0.4, "min_size": 0}]
    prediction = noisy_affinities(task)
    np.testing.assert_array_equal(
        task.post_process(prediction, {"bias": 0.4}),
        task.post_process(prediction, {"route": "mutex", "bias": 0.4}),
    )
    with pytest.raises(KeyError, match=r"route must be one of \['mutex'\], got 'mask'"):
        task.post_process(prediction, {"route": "mask", "h": 4.0})
    with pytest.raises(ValueError, match="routes: each route may be listed once"):
        AffinitiesTask(2, VS, routes=[MutexWatershed(), MutexWatershed()])
    with pytest.raises(ValueError, match=r"routes\[0\]: 'mutex' is not a post-processing Route"):
        AffinitiesTask(2, VS, routes=["mutex"])  # type: ignore[list-item]
    default = AffinitiesTask(2, VS)
    graph = default.graph_route({"route": "agglomeration", "threshold": 0.5})
    assert isinstance(graph, AffinityGraph) and graph.threshold == 0.5
    assert graph.offsets == tuple(default.neighborhood) and graph.voxel_size == VS
    assert default.graph_route({"route": "mutex", "bias": 0.5}) is None
