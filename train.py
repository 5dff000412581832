"""Train a run from a checkout: `python train.py datasplit=x architecture=y task=z trainer=w`.

The same command as `dacapo-train`; `python train.py --help` lists the groups and examples.
"""

from dacapo_hydra.cli import train_main

if __name__ == "__main__":
    train_main()
