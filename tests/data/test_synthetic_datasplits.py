"""Every packaged datasplit reads the synthetic labels where the generator writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dacapo_hydra.api import compose, config_dir
from dacapo_hydra.data.datasplit import DataSplit

SMALL = {2: "[64,64]", 3: "[16,48,48]"}
# The default datasplit in the fast tier; every other one (each generates its data) slow.
OPTIONS = [
    o if o == "synthetic_3d" else pytest.param(o, marks=pytest.mark.slow)
    for o in sorted(p.stem for p in (config_dir() / "datasplit").glob("*.yaml"))
]


@pytest.mark.parametrize("option", OPTIONS)
def test_packaged_datasplits_open_their_synthetic_labels(option: str, tmp_path: Path) -> None:
    cfg = compose(datasplit=option, overrides=[f"paths.data_dir={tmp_path}"])
    shape = SMALL[cfg.datasplit.dims]
    cfg = compose(
        datasplit=option,
        overrides=[f"paths.data_dir={tmp_path}", f"datasplit.synthetic.shape={shape}"],
    )
    split = DataSplit.from_config(cfg.datasplit)
    assert split.train and split.validate
    for dataset in (*split.train, *split.validate):
        assert dataset.gt is not None and dataset.gt.roi == dataset.raw.roi
        assert dataset.mask is not None  # every synthetic container has one
    for spec in cfg.datasplit.get("train") or []:
        gt = spec.get("gt")
        if isinstance(gt, dict) or hasattr(gt, "dataset"):
            assert "/raw/labels/" in str(gt.dataset)
