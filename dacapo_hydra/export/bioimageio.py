"""A bioimage.io model package (format 0.5) of an export folder, tested before it is kept.

:func:`write_bioimageio` describes the folder's TorchScript weights and test pair in
`rdf.yaml`; :func:`test_package` runs `bioimageio.core`'s own test of it (the model run
on the test input, compared with the test output within the stated tolerances), as
`bioimageio test rdf.yaml` does. What the specification requires of a description is
met by construction:

- `name`: 5 to 128 characters, letters, digits and `_+- ()` (:func:`package_name`);
- `config.bioimageio.reproducibility_tolerance`: `relative_tolerance` at most 0.01,
  and a nonzero `absolute_tolerance` at most 1 % of the test output's maximum
  (:func:`reproducibility_tolerance`).
"""

from __future__ import annotations

import logging
import re
import string
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dacapo_hydra.data.normalize import Normalizer

log = logging.getLogger(__name__)

NAME_CHARACTERS = set(string.ascii_letters + string.digits + "_+- ()")
NAME_LENGTH = (5, 64)  # the spec allows 128 but warns above 64
NAME_PREFIX = "dacapo-hydra "
RELATIVE_TOLERANCE = 1e-3
ABSOLUTE_TOLERANCE = 1e-4  # of the test output's range
INSTALL_HINT = "pip install 'dacapo-hydra[bioimageio]'"


def package_name(name: str | None, derived: str) -> str:
    """The package's name: `name` checked as given, else one derived from the run.

    A derived name has its other characters replaced by `-`, is cut at 64 characters and,
    shorter than 5, is prefixed with `dacapo-hydra `.

    Raises:
        ValueError: a given name the specification refuses, with the reason.

    Example:
        >>> package_name(None, "api")
        'dacapo-hydra api'
        >>> package_name(None, "2026-01-01_12:00:00 affinities/unet")
        '2026-01-01_12-00-00 affinities-unet'
        >>> package_name("EM cells (affinities)", "api")
        'EM cells (affinities)'
        >>> package_name("cells", "api") and package_name("a/b c", "api")
        Traceback (most recent call last):
        ...
        ValueError: --name 'a/b c': bioimage.io allows letters, digits, spaces and _+-() only, not '/'

    """  # noqa: E501
    if name is not None:
        bad = sorted(set(name) - NAME_CHARACTERS)
        if bad:
            raise ValueError(
                f"--name {name!r}: bioimage.io allows letters, digits, spaces and _+-() only, "
                f"not {''.join(bad)!r}"
            )
        lo, hi = NAME_LENGTH
        if not lo <= len(name.strip()) <= hi:
            raise ValueError(f"--name {name!r}: bioimage.io needs {lo} to {hi} characters")
        return name.strip()
    cleaned = re.sub(r"-+", "-", "".join(c if c in NAME_CHARACTERS else "-" for c in derived))
    cleaned = cleaned.strip(" -")[: NAME_LENGTH[1]].strip()
    if len(cleaned) < NAME_LENGTH[0]:
        cleaned = (NAME_PREFIX + cleaned).strip()
    return cleaned


def reproducibility_tolerance(output: np.ndarray) -> tuple[float, float]:
    """(absolute, relative) tolerance for reproducing the test output, as the spec allows.

    The absolute tolerance is 1e-4 of the output's range (its largest magnitude if
    constant), capped at 1 % of its maximum, the specification's bound; an output
    whose maximum is not positive gets 0 (the relative tolerance, 1e-3, then judges
    every element).

    Example:
        >>> reproducibility_tolerance(np.array([-0.9, -0.15]))  # all negative: none
        (0.0, 0.001)
        >>> reproducibility_tolerance(np.array([0.0, 0.5, 1.0]))
        (0.0001, 0.001)
        >>> reproducibility_tolerance(np.array([-100.0, 0.001]))  # capped at 1 % of the max
        (1e-05, 0.001)

    """
    values = np.asarray(output, dtype=np.float64)
    peak = float(values.max())
    spread = float(values.max() - values.min()) or float(np.abs(values).max())
    absolute = min(ABSOLUTE_TOLERANCE * spread, 0.01 * peak) if peak > 0 else 0.0
    return float(f"{absolute:.3g}"), RELATIVE_TOLERANCE


def _axes(bio: Any, metadata: dict[str, Any], which: str, cls: Any) -> list[Any]:
    """Batch, channel and spatial axes of the input (`which` = input) or output."""
    spatial = "zyx"[3 - metadata["dims"] :]
    channels = metadata["in_channels" if which == "input" else "out_channels"]
    names = metadata.get("channel_names") if which == "output" else None
    names = names or [f"{'raw' if which == 'input' else 'c'}{i}" for i in range(channels)]
    channel = bio.ChannelAxis(channel_names=[bio.Identifier(n) for n in names])
    space = [
        cls(id=bio.AxisId(a), size=int(n), scale=float(v), unit="nanometer")
        for a, n, v in zip(
            spatial,
            metadata[f"{which}_shape"],
            metadata[f"{which}_voxel_size"],
            strict=True,
        )
    ]
    return [bio.BatchAxis(), channel, *space]


def _preprocessing(bio: Any, metadata: dict[str, Any]) -> list[Any]:
    """The raw normalisation as a `scale_linear` step (none for mode `none`)."""
    norm = Normalizer.from_dict(metadata["normalize"])
    if norm.mode == "none":
        return []
    return [bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=norm.gain, offset=norm.offset))]


def _write_readme(folder: Path, metadata: dict[str, Any]) -> Path:
    """The package's documentation, `README.md` in `folder`."""
    readme = folder / "README.md"
    readme.write_text(
        f"# {metadata['name']}\n\nA dacapo-hydra model ({metadata['architecture']}, "
        f"{metadata['task']}), exported from `{metadata['checkpoint']}`.\n\n"
        "Input: raw intensities, normalised as in `model.json`; output: the task's "
        "prediction after its activation. `apply.py` predicts a whole array blockwise "
        "with torch and numpy only; `config.yaml` is the training config.\n"
    )
    return readme


def _tensors(bio: Any, metadata: dict[str, Any], preprocessing: list[Any]) -> dict[str, list[Any]]:
    """The description's `inputs` (raw) and `outputs` (prediction), with their test tensors."""
    files = metadata["files"]
    return {
        "inputs": [
            bio.InputTensorDescr(
                id=bio.TensorId("raw"),
                axes=_axes(bio, metadata, "input", bio.SpaceInputAxis),
                test_tensor=bio.FileDescr(source=Path(files["sample_input"])),
                preprocessing=preprocessing,
            )
        ],
        "outputs": [
            bio.OutputTensorDescr(
                id=bio.TensorId("prediction"),
                axes=_axes(bio, metadata, "output", bio.SpaceOutputAxis),
                test_tensor=bio.FileDescr(source=Path(files["sample_output"])),
            )
        ],
    }


def _tolerance_config(bio: Any, absolute: float, relative: float) -> Any:
    """`config.bioimageio.reproducibility_tolerance` of the description."""
    return bio.Config(
        bioimageio=bio.BioimageioConfig(
            reproducibility_tolerance=[
                bio.ReproducibilityTolerance(
                    absolute_tolerance=absolute, relative_tolerance=relative
                )
            ]
        )
    )


def write_bioimageio(
    folder: Path,
    metadata: dict[str, Any],
    authors: list[str] | None = None,
    license_id: str = "CC-BY-4.0",
) -> Path:
    """Write `rdf.yaml`, a bioimage.io model description (format 0.5), into an export folder.

    It points at the folder's TorchScript weights and test pair; the raw
    normalisation becomes a `scale_linear` preprocessing step. The description is
    validated (files and checksums) before it is written.

    Raises:
        ValueError: if `bioimageio.spec` is missing, the export has no TorchScript
            file, or the description does not validate.

    """
    try:
        from bioimageio.spec import ValidationContext, save_bioimageio_yaml_only
        from bioimageio.spec.model import v0_5 as bio
    except ImportError:
        raise ValueError(f"export: a bioimage.io package needs `{INSTALL_HINT}`") from None
    if not metadata["files"]["torchscript"]:
        raise ValueError("export: bioimage.io needs TorchScript weights, which failed to save")
    preprocessing = _preprocessing(bio, metadata)
    readme = _write_readme(folder, metadata)
    absolute, relative = reproducibility_tolerance(
        np.load(folder / metadata["files"]["sample_output"])
    )
    try:
        with ValidationContext(root=folder, perform_io_checks=True):
            model = bio.ModelDescr(
                name=metadata["name"],
                description=f"dacapo-hydra: {metadata['task']} with {metadata['architecture']}",
                authors=[bio.Author(name=n) for n in (authors or ["dacapo-hydra user"])],
                cite=[
                    bio.CiteEntry(
                        text="DaCapo", url=bio.HttpUrl("https://github.com/janelia-cellmap/dacapo")
                    )
                ],
                license=bio.LicenseId(license_id),
                documentation=bio.FileDescr(source=Path(readme.name)),
                **_tensors(bio, metadata, preprocessing),
                weights=bio.WeightsDescr(
                    torchscript=bio.TorchscriptWeightsDescr(
                        source=Path(metadata["files"]["torchscript"]),
                        pytorch_version=bio.Version(torch.__version__.split("+")[0]),
                    )
                ),
                config=_tolerance_config(bio, absolute, relative),
            )
    except ValueError as err:  # pydantic's ValidationError is a ValueError
        first = str(err).strip().splitlines()
        raise ValueError(
            f"export: the bioimage.io description does not validate: {' '.join(first[:3])}"
        ) from None
    path = folder / "rdf.yaml"
    save_bioimageio_yaml_only(model, path)
    return path


def test_package(rdf: Path) -> None:
    """Run bioimageio.core's test of the package at `rdf` (as `bioimageio test rdf.yaml`).

    Raises:
        ValueError: bioimageio.core is missing, or its test fails (the first failure named).

    """
    try:
        from bioimageio.core import test_model
    except ImportError:
        raise ValueError(
            f"export: testing the bioimage.io package needs bioimageio.core: `{INSTALL_HINT}`"
        ) from None
    summary = test_model(rdf, devices=["cpu"])
    if summary.status == "passed":
        return
    failures = [
        f"{detail.name}: {error.msg}"
        for detail in summary.details
        if detail.status == "failed"
        for error in (detail.errors or [])
    ] or [f"status {summary.status}"]
    raise ValueError(f"export: bioimageio.core's test of the package failed: {failures[0]}")
