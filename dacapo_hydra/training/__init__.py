"""Training: the LightningModule, building a run from a config, the loop, validation, callbacks."""
