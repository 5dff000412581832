"""The augmentation pipeline from the trainer config: what each transform does to raw and gt."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from dacapo_hydra.config.trainer import AugmentConfig
from dacapo_hydra.data.augment import build_augment, build_deformation

SHAPE = (12, 16, 16)


def _cfg(**kw: object):
    base = OmegaConf.structured(AugmentConfig)
    for key in ("mirror_prob", "transpose_prob", "intensity_prob"):
        base[key] = 0.0
    return OmegaConf.merge(base, kw)


def _crop() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.2, 0.8, (1, *SHAPE)).astype(np.float32)
    gt = rng.integers(1, 5, (1, *SHAPE)).astype(np.uint64)
    return {"raw": raw, "gt": gt, "mask": np.ones((1, *SHAPE), np.uint8)}


def _run(cfg, crop: dict[str, np.ndarray], seed: int = 0, dims: int = 3) -> dict[str, np.ndarray]:
    augment = build_augment(cfg, dims, SHAPE[-dims:], SHAPE[-dims:], (8.0,) * dims)
    augment.set_random_state(seed=seed)
    return {k: np.asarray(v) for k, v in augment(dict(crop)).items()}


def test_off_by_default_and_deformation_only_when_asked() -> None:
    crop = _crop()
    out = _run(_cfg(), crop)
    np.testing.assert_array_equal(out["raw"], crop["raw"])
    assert build_deformation(_cfg(), 3, (8.0,) * 3, SHAPE) is None
    elastic = {"prob": 1.0, "jitter_sigma": [0, 10, 10]}
    deform = build_deformation(_cfg(elastic=elastic), 3, (8.0,) * 3, SHAPE)
    assert deform is not None and deform.sigma == (0.0, 10.0, 10.0)


def test_missing_sections_blank_whole_raw_sections_only() -> None:
    crop = _crop()
    out = _run(_cfg(missing_section={"prob": 0.5, "value": 0.0}), crop)
    blank = [z for z in range(SHAPE[0]) if not out["raw"][0, z].any()]
    assert 0 < len(blank) < SHAPE[0]
    kept = [z for z in range(SHAPE[0]) if z not in blank]
    np.testing.assert_array_equal(out["raw"][0, kept], crop["raw"][0, kept])
    np.testing.assert_array_equal(out["gt"], crop["gt"])


@pytest.mark.parametrize("mode", ["slip", "translation"])
def test_misalignment_shifts_sections_in_yx(mode: str) -> None:
    crop = _crop()
    out = _run(_cfg(misalignment={"prob": 1.0, "max_shift": 24, "mode": mode}), crop, seed=3)
    moved = [z for z in range(SHAPE[0]) if not np.array_equal(out["raw"][0, z], crop["raw"][0, z])]
    assert moved, "no section moved"
    if mode == "slip":
        assert len(moved) == 1
    else:
        assert moved == list(range(moved[0], SHAPE[0]))
    z = moved[0]
    # The moved section is the original one shifted: its centre reappears somewhere nearby.
    centre = crop["raw"][0, z, 6:10, 6:10]
    found = any(
        np.array_equal(out["raw"][0, z, 6 + dy : 10 + dy, 6 + dx : 10 + dx], centre)
        for dy in range(-3, 4)
        for dx in range(-3, 4)
    )
    assert found
    np.testing.assert_array_equal(out["gt"], crop["gt"])


def test_intensity_gamma_noise_blur_touch_raw_only() -> None:
    crop = _crop()
    cfg = _cfg(
        intensity_prob=1.0,
        gamma={"prob": 1.0},
        noise={"prob": 1.0, "std": 0.1},
        blur={"prob": 1.0, "sigma_min": 8, "sigma_max": 16},
    )
    out = _run(cfg, crop)
    assert not np.allclose(out["raw"], crop["raw"])
    assert out["raw"].std() < crop["raw"].std() * 1.5
    np.testing.assert_array_equal(out["gt"], crop["gt"])
    np.testing.assert_array_equal(out["mask"], crop["mask"])
    blurred = _run(_cfg(blur={"prob": 1.0, "sigma_min": 8, "sigma_max": 16}), crop)
    assert blurred["raw"].std() < 0.6 * crop["raw"].std()


def test_mirror_and_transpose_move_raw_gt_mask_together() -> None:
    crop = _crop()
    crop["raw"] = crop["gt"].astype(np.float32) / 10
    for seed in range(5):
        out = _run(_cfg(mirror_prob=0.5, transpose_prob=0.5), crop, seed=seed)
        np.testing.assert_allclose(out["raw"] * 10, out["gt"].astype(np.float32))


def test_sections_are_left_alone_in_2d() -> None:
    crop = {k: v[:, 0] for k, v in _crop().items()}
    out = _run(_cfg(missing_section={"prob": 1.0}, misalignment={"prob": 1.0}), crop, dims=2)
    np.testing.assert_array_equal(out["raw"], crop["raw"])
