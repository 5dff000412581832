"""Synthetic light-microscopy nuclei: DAPI/Hoechst-like widefield/confocal images, 2D or 3D.

The data imitates fluorescence images of stained nuclei in crowded cell cultures or
tissue: blob-shaped nuclei (irregular ellipses/ellipsoids of 6-14 µm) packed so that
many touch, some cut by the image border, on a dark background with a gentle
illumination gradient. Nuclei differ in brightness, carry chromatin-like texture and
bright spots, and fade towards their rim, so a human separates touching nuclei but a
plain threshold merges them. An anisotropic optical blur (coarser along z), shot noise
and camera read noise finish the picture; intensities are camera counts in uint16.
Ground truth is fully annotated instances (mask all 1), as usual for nuclei.

Sizes are physical (nm) and converted with the voxel size, so the same seed gives the
same nuclei, in voxels proportionally larger, at a finer voxel size covering the same field.
The intensities are tuned so that a global Otsu threshold finds nearly every nucleus but
merges touching ones: the failure mode real nuclei segmentation has to beat.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

DEFAULT_VOXEL_SIZE = {2: (250.0, 250.0), 3: (1000.0, 250.0, 250.0)}
# Nominal fraction of the field covered by nuclei: a confluent monolayer in a 2D section,
# a looser packing in 3D (where the default field is only ~3 nuclei deep).
DEFAULT_FILL = {2: 0.8, 3: 0.3}
# Gaussian PSF sigma (nm), z y x: a confocal-like blur, about three times wider along z.
DEFAULT_PSF_SIGMA = (900.0, 300.0, 300.0)


def generate_nuclei(
    shape: Sequence[int] = (256, 256),
    seed: int = 0,
    voxel_size: Sequence[float] | None = None,
    diameter: tuple[float, float] = (6000.0, 14000.0),
    fill: float | None = None,
    brightness: tuple[float, float] = (800.0, 4000.0),
    psf_sigma: Sequence[float] | None = None,
    gain: float = 2.0,
    read_noise: float = 8.0,
) -> dict[str, np.ndarray]:
    """Generate one fluorescence-nuclei image (2D) or volume (3D) in memory.

    Args:
        shape: voxels per axis (2 or 3 axes, z first in 3D).
        seed: random seed; the same seed gives the same image.
        voxel_size: nm per axis (default 250 nm in-plane, 1000 nm along z).
        diameter: range of nucleus diameters (nm); small ones are more common.
        fill: nominal fraction of the field covered by nuclei, overlaps counted
            twice (default 0.8 in 2D, a confluent monolayer, and 0.3 in 3D).
        brightness: range of nucleus peak intensities (counts); most lie in the upper
            half, a few dim ones below (log-normal, clipped to the range).
        psf_sigma: Gaussian PSF sigma (nm) per axis (default 300 nm in-plane,
            900 nm along z): the optical blur a microscope adds.
        gain: counts per photon; the shot noise grows with it.
        read_noise: standard deviation (counts) of the camera's Gaussian read noise.

    Returns:
        `raw` (uint16 counts), `labels` (uint64 instances 1..N, touching nuclei keep
        distinct ids, each one connected component) and `mask` (uint8, all 1).

    """
    shape = tuple(int(s) for s in shape)
    dims = len(shape)
    if dims not in (2, 3):
        raise ValueError(f"synthetic nuclei: shape must have 2 or 3 axes, got {shape}")
    vs = np.asarray(voxel_size if voxel_size is not None else DEFAULT_VOXEL_SIZE[dims], float)
    if vs.shape != (dims,):
        raise ValueError(f"synthetic nuclei: voxel_size {list(vs)} must have {dims} entries")
    vs_um = vs / 1000.0
    psf = np.asarray(psf_sigma if psf_sigma is not None else DEFAULT_PSF_SIGMA[-dims:], float)
    # Separate streams: the geometry depends on the physical field only, not on the voxel grid.
    geo = np.random.default_rng([seed, 0])
    img = np.random.default_rng([seed, 1])

    extent = np.asarray(shape) * vs_um
    d_um = (diameter[0] / 1000.0, diameter[1] / 1000.0)
    centres, radii = _place(geo, extent, d_um, DEFAULT_FILL[dims] if fill is None else fill)
    labels, dist = _rasterize(geo, shape, vs_um, centres, radii)
    labels = _consecutive(_keep_largest_components(labels))
    dist[labels == 0] = np.inf

    raw = _render(img, geo, labels, dist, vs_um, brightness)
    raw = _image(img, raw, psf / vs, gain, read_noise)
    return {"raw": raw, "labels": labels, "mask": np.ones(shape, np.uint8)}


def _consecutive(labels: np.ndarray) -> np.ndarray:
    """`labels` renumbered 1..N in order of their ids (0 stays background), as uint64.

    Example:
        >>> _consecutive(np.array([[0, 7], [3, 7]])).tolist()
        [[0, 2], [1, 2]]

    """
    ids, inverse = np.unique(labels, return_inverse=True)
    relabelled = inverse.reshape(labels.shape).astype(np.uint64)
    if ids[0] != 0:  # every voxel inside a nucleus: ids start at 1 all the same
        relabelled += 1
    return relabelled


def _image(
    rng: np.random.Generator, raw: np.ndarray, psf: np.ndarray, gain: float, read_noise: float
) -> np.ndarray:
    """The camera's uint16 counts of the rendered `raw`: PSF blur (voxels), shot and read noise."""
    raw = ndimage.gaussian_filter(raw, sigma=psf)
    photons = rng.poisson(np.clip(raw, 0, None) / gain)
    raw = photons * gain + rng.normal(scale=read_noise, size=raw.shape)
    return np.clip(np.rint(raw), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def _place(
    rng: np.random.Generator, extent: np.ndarray, diameter: tuple[float, float], fill: float
) -> tuple[np.ndarray, np.ndarray]:
    """Place nuclei by random sequential addition with overlap allowed (all in µm).

    Centres may lie a little outside the field, so border nuclei are cut. Two nuclei may
    come as close as 0.7 times the sum of their radii: closer pairs overlap and are split
    later, which makes them touch along a shared boundary, as in crowded cultures.
    """
    dims = len(extent)
    margin = 0.3 * diameter[1] / 2
    lo, hi = -margin, extent + margin
    mean_size = np.mean(_diameters(np.linspace(0, 1, 1001), diameter) ** dims)
    unit = np.pi / 4 if dims == 2 else np.pi / 6
    target = max(1, int(fill * np.prod(hi - lo) / (unit * mean_size)))
    centres = np.empty((0, dims))
    radii = np.empty(0)
    for _ in range(100 * target):
        c = rng.uniform(lo, hi)
        r = _diameters(rng.uniform(), diameter) / 2
        if (np.linalg.norm(centres - c, axis=1) < 0.7 * (radii + r)).any():
            continue
        centres = np.vstack([centres, c])
        radii = np.append(radii, r)
        if len(radii) == target:
            break
    return centres, radii


def _diameters(u: np.ndarray | float, diameter: tuple[float, float]) -> np.ndarray:
    """Map uniform draws `u` to diameters skewed to the small end (most cells are in G1)."""
    return diameter[0] + (diameter[1] - diameter[0]) * np.asarray(u) ** 2


def _rasterize(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    vs_um: np.ndarray,
    centres: np.ndarray,
    radii: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw each nucleus in its bounding box; a voxel goes to the nearest in relative distance.

    Each nucleus is an ellipse/ellipsoid (random orientation, axis ratios 0.65-1) whose
    boundary is perturbed by a few low-frequency waves over the direction. Its relative
    distance is 0 at the centre and 1 on the boundary; where nuclei overlap, the one with
    the smaller relative distance wins (a multiplicatively weighted Voronoi rule), so
    larger nuclei keep proportionally more of the contact zone.

    Returns:
        The labels (int32, 0 = background) and each voxel's relative distance (inf outside).

    """
    dims = len(shape)
    labels = np.zeros(shape, np.int32)
    dist = np.full(shape, np.inf, np.float32)
    for i, (c, r) in enumerate(zip(centres, radii, strict=True), start=1):
        ratios = rng.uniform(0.65, 1.0, dims)
        axes = r * ratios / np.prod(ratios) ** (1 / dims)
        q, upper = np.linalg.qr(rng.normal(size=(dims, dims)))
        rot = q * np.sign(np.diag(upper))
        waves = rng.normal(scale=2.0, size=(4, dims))
        phases = rng.uniform(0, 2 * np.pi, 4)
        amps = rng.uniform(0.0, 0.05, 4)
        reach = axes.max() * 1.25
        lo = np.maximum(np.floor((c - reach) / vs_um).astype(int), 0)
        hi = np.minimum(np.ceil((c + reach) / vs_um).astype(int) + 1, shape)
        if (hi <= lo).any():
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        axes_1d = [np.arange(a, b) * v - m for a, b, v, m in zip(lo, hi, vs_um, c, strict=True)]
        offset = np.stack(np.meshgrid(*axes_1d, indexing="ij"))
        local = np.tensordot(rot.T, offset, axes=1) / axes.reshape((dims,) + (1,) * dims)
        rho = np.sqrt((local**2).sum(axis=0))
        direction = local / np.maximum(rho, 1e-6)
        wave = np.sin(np.tensordot(waves, direction, axes=1) + phases.reshape((4,) + (1,) * dims))
        rel = rho / (1.0 + np.tensordot(amps, wave, axes=1))
        take = (rel < 1.0) & (rel < dist[box])
        labels[box][take] = i
        dist[box][take] = rel[take]
    return labels, dist


def _keep_largest_components(labels: np.ndarray) -> np.ndarray:
    """Clear all but the largest connected piece of each label.

    The weighted Voronoi rule can leave a sliver of a nucleus cut off behind a
    neighbour; ground truth nuclei are single connected objects.
    """
    for i, region in enumerate(ndimage.find_objects(labels), start=1):
        if region is None:
            continue
        pieces, n = ndimage.label(labels[region] == i)
        if n > 1:
            sizes = np.bincount(pieces.ravel())[1:]
            labels[region][(pieces > 0) & (pieces != sizes.argmax() + 1)] = 0
    return labels


def _render(
    img: np.random.Generator,
    geo: np.random.Generator,
    labels: np.ndarray,
    dist: np.ndarray,
    vs_um: np.ndarray,
    brightness: tuple[float, float],
) -> np.ndarray:
    """Noise-free, unblurred fluorescence (float32 counts) of the labelled nuclei.

    Brightness varies per nucleus (as DNA content and staining do) but mostly within a
    factor ~2, as in real DAPI images, so one global threshold finds most nuclei. The
    outer fifth of each nucleus fades to 62 %: contacts show a dim seam that a human sees
    but that stays above a global threshold. Chromatin is smooth noise at two scales
    (the finer one at least a voxel wide, so coarse z steps keep some texture) plus
    bright chromocenter/nucleoli-like spots.
    """
    shape = labels.shape
    n = int(labels.max())
    typical = brightness[0] ** 0.3 * brightness[1] ** 0.7
    tone = np.clip(typical * np.exp(geo.normal(scale=0.2, size=n + 1)), *brightness)
    tone = tone.astype(np.float32)
    tone[0] = 0.0
    rim = np.clip((1.0 - dist) / 0.2, 0.0, 1.0)
    profile = 0.62 + 0.38 * rim * rim * (3 - 2 * rim)

    texture = 1.0 + 0.08 * _smooth_noise(img, shape, np.maximum(0.4 / vs_um, 0.8))
    texture += 0.07 * _smooth_noise(img, shape, 1.2 / vs_um)
    inside = np.flatnonzero(labels)
    spots = np.zeros(shape, np.float32)
    if inside.size:
        # About one spot per 4 µm cube (square in 2D) of nucleus, as chromocenters go.
        n_spots = int(inside.size * np.prod(vs_um) / 4.0 ** len(shape)) + 1
        spots.flat[img.choice(inside, size=n_spots)] = 1.0
        spot_sigma = 0.45 / vs_um
        spots = ndimage.gaussian_filter(spots, sigma=spot_sigma)
        peak = ndimage.gaussian_filter(_delta(spot_sigma), sigma=spot_sigma).max()
        spots /= peak
    nuclei = tone[labels] * profile * texture * (1.0 + 0.6 * spots)

    grid = np.meshgrid(*[np.linspace(0, 1, s) for s in shape], indexing="ij", sparse=True)
    slope = img.normal(size=len(shape))
    ramp = sum(g * s for g, s in zip(grid, slope / np.linalg.norm(slope), strict=True))
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    background = 120.0 + 220.0 * ramp + 25.0 * _smooth_noise(img, shape, 6.0 / vs_um)
    return (background + np.where(labels > 0, nuclei, 0.0)).astype(np.float32)


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], sigma: np.ndarray
) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation (float32)."""
    noise = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma=sigma)
    return noise / max(float(noise.std()), 1e-6)


def _delta(sigma: np.ndarray) -> np.ndarray:
    """A unit impulse in a box wide enough to hold its Gaussian blur with `sigma`."""
    size = tuple(2 * int(np.ceil(4 * s)) + 1 for s in sigma)
    out = np.zeros(size, np.float32)
    out[tuple(s // 2 for s in size)] = 1.0
    return out
