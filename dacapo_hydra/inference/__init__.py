"""Inference: block grids and ledgers, blockwise prediction, labels and stitching, apply."""
