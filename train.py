"""Train a run from a checkout: python train.py datasplit=x architecture=y task=z trainer=w."""

from dacapo_hydra.cli import train_main

if __name__ == "__main__":
    train_main()
