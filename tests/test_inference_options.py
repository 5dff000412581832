"""The options of prediction and application: checked when made, in one line each."""

from __future__ import annotations

import pickle

import pytest

from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.options import ApplyOptions, Execution, LabelsOptions, PredictOptions


def test_predict_options_normalise_their_values() -> None:
    options = PredictOptions(
        roi=Roi((0.0, 0.0), (8.0, 8.0)),
        dtype="uint8",
        value_range=[-1, 1],
        input_shape=[44, 44],
        block_shape=(28, 28),
        raw_voxel_size=[8, 8],
        raw_offset=[0, 4],
    )
    assert options.value_range == (-1.0, 1.0)
    assert options.input_shape == (44, 44) and options.block_shape == (28, 28)
    assert options.raw_voxel_size == (8.0, 8.0) and options.raw_offset == (0.0, 4.0)
    assert pickle.loads(pickle.dumps(options)) == options  # travels to Dask workers
    with pytest.raises(TypeError):
        PredictOptions("uint8")  # keyword-only


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "int8"}, "dtype must be one of ('float32', 'float16', 'uint8'), got 'int8'"),
        ({"dtype": "uint8", "value_range": (1, 1)}, "value_range (1.0, 1.0): the upper end"),
        ({"value_range": (0, 1, 2)}, "value_range (0, 1, 2): expected two numbers, LO HI"),
        ({"overlap": 1.0}, "overlap must be in [0, 1), got 1.0"),
        ({"window_batch": 0}, "window_batch must be a whole number >= 1, got 0"),
        ({"input_shape": [44, 0]}, "input_shape [44, 0]: expected positive values"),
        ({"input_shape": [44.5]}, "input_shape [44.5]: expected a list of whole numbers"),
        ({"block_shape": "28"}, "block_shape '28': expected a list of whole numbers"),
        ({"raw_voxel_size": [8, -8]}, "raw_voxel_size [8.0, -8.0]: expected positive values"),
        ({"raw_offset": [0, float("nan")]}, "raw_offset [0, nan]: expected a list of numbers"),
    ],
)
def test_bad_predict_options_are_refused_in_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        PredictOptions(**kwargs)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give either an MLflow run id or a checkpoint (with params), not both"),
        ({"run_id": "a", "checkpoint": "m.ckpt"}, "give either an MLflow run id"),
        ({"checkpoint": "m.ckpt"}, "a checkpoint alone does not say which post-processing"),
        ({"run_id": "a", "params": {"threshold": 0.5}}, "params go with a checkpoint"),
        (
            {"run_id": "a", "prediction": PredictOptions(dtype="uint8")},
            "dtype 'uint8': dacapo-apply post-processes the prediction it writes",
        ),
        ({"run_id": "a", "labels_dataset": "/"}, "labels_dataset: give the label image a name"),
    ],
)
def test_bad_apply_options_are_refused_in_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        ApplyOptions(**kwargs)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_the_label_image_is_named_for_what_it_holds() -> None:
    run = ApplyOptions(run_id="a")
    assert run.labels_name(instances=True) == "labels"
    assert run.labels_name(instances=False) == "mask"
    assert (
        ApplyOptions(run_id="a", labels=LabelsOptions(connected_components=True)).labels_name(False)
        == "labels"
    )
    assert ApplyOptions(run_id="a", labels_dataset="/cells/").labels_name(True) == "cells"


def test_execution() -> None:
    assert Execution().in_process and not Execution(workers=2).in_process
    assert not Execution(devices=["0"]).in_process
    assert not Execution(scheduler="tcp://10.0.0.5:8786").in_process
    assert Execution(devices=[0, 1]).devices == ("0", "1")
    assert Execution(devices=["0", "1", "2"]).workers == 3  # one per GPU unless given
    assert Execution(devices=["0", "1"], workers=4).workers == 4
    for kwargs, message in (
        ({"workers": 0}, "workers 0: expected at least 1"),
        ({"workers": 1.5}, "workers 1.5: expected a whole number"),
        ({"devices": "0,1"}, "devices '0,1': expected a list of GPUs"),
        ({"devices": ["0"], "scheduler": "tcp://x:1"}, "devices ['0'] start a LocalCluster"),
    ):
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
            Execution(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"block_shape": [64, 0]}, "block_shape [64, 0]: expected positive values"),
        ({"context": [-1, 0]}, "context [-1, 0]: expected voxel counts >= 0"),
        ({"context": "8"}, "context '8': expected a list of whole numbers"),
        ({"context": [1.5]}, "context [1.5]: expected a list of whole numbers"),
        ({"merge_fraction": 0}, "merge_fraction 0: expected a number in (0, 1]"),
        ({"levels": 0}, "levels 0: expected a whole number >= 1"),
    ],
)
def test_bad_labels_options_are_refused_in_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        LabelsOptions(**kwargs)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_an_application_labels_with_its_predictions_overwrite_and_levels() -> None:
    options = ApplyOptions(
        run_id="a",
        prediction=PredictOptions(overwrite=True, levels=3),
        labels=LabelsOptions(block_shape=[32, 32], levels=1),
    )
    assert options.labels == LabelsOptions(block_shape=(32, 32), overwrite=True, levels=3)
