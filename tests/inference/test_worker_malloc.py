"""The Dask workers our commands start get glibc's thresholds (devices.WORKER_MALLOC)."""

from __future__ import annotations

import os

import dask
import pytest

from dacapo_hydra.devices import WORKER_MALLOC, worker_malloc
from dacapo_hydra.inference.options import Execution
from dacapo_hydra.inference.schedule import open_client


def test_the_config_holds_dasks_own_settings_too_and_only_in_the_block() -> None:
    import distributed  # noqa: F401 - its defaults in Dask's config

    key = "distributed.nanny.pre-spawn-environ"
    before = dict(dask.config.get(key))
    with worker_malloc():
        inside = dask.config.get(key)
        assert inside["MALLOC_MMAP_THRESHOLD_"] == 32 * 2**20
        assert inside["MALLOC_TRIM_THRESHOLD_"] == 128 * 2**20
        assert {k: v for k, v in before.items() if k not in WORKER_MALLOC}.items() <= dict(
            inside
        ).items()
    assert dict(dask.config.get(key)) == before


@pytest.mark.slow
def test_a_local_clusters_workers_start_with_the_thresholds() -> None:
    names = sorted(WORKER_MALLOC)
    with open_client(Execution(workers=2, progress=False)) as client:
        seen = client.run(lambda: {n: os.environ.get(n) for n in names + ["OMP_NUM_THREADS"]})
    for env in seen.values():
        assert env == {**{n: str(WORKER_MALLOC[n]) for n in names}, "OMP_NUM_THREADS": "1"}
