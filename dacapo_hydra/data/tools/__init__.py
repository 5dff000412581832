"""Tools around data: synthetic volumes, conversion to OME-Zarr, CSV datasplits."""
