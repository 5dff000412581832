"""Tasks: targets and weights from ground truth, loss, activation."""
