"""A simple experiment in Python: compose a run from group options, train it, read the result.

python examples/simple_experiment.py                 # 100 iterations of affinities in 3D
python examples/simple_experiment.py iterations=20   # any Hydra override
"""

from __future__ import annotations

import sys

from mlflow.tracking import MlflowClient

from dacapo_hydra import compose, train

overrides = ["iterations=100", "validation_interval=50", *sys.argv[1:]]
cfg = compose(
    datasplit="synthetic_3d", architecture="unet_tiny", task="affinities", overrides=overrides
)
result = train(cfg)

# Everything the run recorded is in MLflow: read it back like any MLflow run.
run = MlflowClient(result.tracking_uri).get_run(result.run_id)
print(f"run id:       {result.run_id} ({run.info.status})")
print(f"final loss:   {result.final_loss:.4f}")
print(f"val loss:     {result.val_loss}")
print(f"checkpoint:   {result.checkpoint}")
print(f"tags:         { {k: v for k, v in run.data.tags.items() if not k.startswith('mlflow.')} }")
