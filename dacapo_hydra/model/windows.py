"""Sliding windows of 'same'-padding networks, computed once and blended into blocks.

A 'same'-padding network predicts a volume the way MONAI's `sliding_window_inference`
does: overlapping windows, each weighted by a Gaussian importance map, summed and
divided by the summed weights. Blockwise, the windows are those of one pass over the
whole prediction ROI (:class:`WindowGrid`, MONAI's own placement), and a block blends
every window that touches it (:func:`blend`), so the output equals that one pass.

A window on a block border touches two to eight blocks. :class:`WindowCache` keeps
each computed window until every block touching it has used it (bounded in bytes),
and lets a block wait for a window another thread is computing, so every window is
computed once per process: blockwise costs what one sliding-window pass costs.

Example:
    >>> grid = WindowGrid.over((10,), (4,), 0.5)
    >>> grid.starts
    ((0, 2, 4, 6),)
    >>> grid.touching((slice(0, 5),))
    [(0,), (2,), (4,)]

"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.data.utils import compute_importance_map, dense_patch_slices

# MONAI's Gaussian blending: sigma of the importance map per window side.
SIGMA_SCALE = 0.125

# Bytes of computed windows a process keeps for the blocks that still need them.
CACHE_BYTES = 1 << 30

Start = tuple[int, ...]


@dataclass(frozen=True)
class WindowGrid:
    """The windows of one MONAI sliding-window pass over a ROI.

    Attributes:
        starts: per axis, the windows' first input voxels, relative to the ROI's begin
            (MONAI's `dense_patch_slices`: every stride, the last one flush with the
            end; a ROI narrower than the window gets one window centred on it).
        window: the window (input voxels).
        upsample: output voxels per input voxel, per axis.

    """

    starts: tuple[tuple[int, ...], ...]
    window: tuple[int, ...]
    upsample: tuple[int, ...]

    @classmethod
    def over(
        cls,
        shape: Sequence[int],
        window: Sequence[int],
        overlap: float,
        upsample: Sequence[int] | None = None,
    ) -> WindowGrid:
        """The windows over a ROI of `shape` input voxels, as MONAI places them."""
        starts = []
        for size, w in zip(shape, window, strict=True):
            padded = max(size, w)
            interval = w if w == padded else max(int(w * (1 - overlap)), 1)
            spans = dense_patch_slices((padded,), (w,), (interval,), return_slice=False)
            # MONAI pads a ROI narrower than the window by half the difference before it.
            starts.append(tuple(int(s[0][0]) - (padded - size) // 2 for s in spans))
        up = tuple(upsample) if upsample is not None else (1,) * len(window)
        return cls(tuple(starts), tuple(window), up)

    def touching(self, region: Sequence[slice]) -> list[Start]:
        """Starts of the windows overlapping `region` (input voxels), in MONAI's order."""
        axes = [
            [s for s in starts if s < r.stop and s + w > r.start]
            for starts, w, r in zip(self.starts, self.window, region, strict=True)
        ]
        return list(itertools.product(*axes))

    def blocks_touched(
        self, start: Start, write_shape: Sequence[int], blocks: Sequence[int]
    ) -> int:
        """How many blocks of `write_shape` output voxels (`blocks` per axis) a window touches."""
        count = 1
        for s, w, u, b, n in zip(
            start, self.window, self.upsample, write_shape, blocks, strict=True
        ):
            first = max(s * u // b, 0)
            last = min(((s + w) * u - 1) // b, n - 1)
            count *= max(last - first + 1, 0)
        return count

    def importance(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """MONAI's Gaussian weights of a window's output (resized as MONAI does if upsampled)."""
        weights = compute_importance_map(
            self.window, mode="gaussian", sigma_scale=SIGMA_SCALE, device=device
        ).float()
        out = tuple(w * u for w, u in zip(self.window, self.upsample, strict=True))
        if out != self.window:
            weights = F.interpolate(weights[None, None], out, mode="nearest-exact")[0, 0]
        return weights


def blend(
    grid: WindowGrid,
    region: Sequence[slice],
    outputs: Mapping[Start, torch.Tensor],
    weights: torch.Tensor,
) -> torch.Tensor:
    """The blended prediction (C, *region) of `region` (output voxels) from its windows.

    Sums each window's output times its weights, and the weights, over the region,
    in MONAI's order, and divides.
    """
    shape = tuple(r.stop - r.start for r in region)
    total = None
    norm = torch.zeros(shape, dtype=weights.dtype, device=weights.device)
    for start, y in outputs.items():
        inside, window = [], []
        for s, w, u, r in zip(start, grid.window, grid.upsample, region, strict=True):
            lo, hi = max(s * u, r.start), min((s + w) * u, r.stop)
            inside.append(slice(lo - r.start, hi - r.start))
            window.append(slice(lo - s * u, hi - s * u))
        g = weights[tuple(window)]
        if total is None:
            total = torch.zeros((y.shape[0], *shape), dtype=weights.dtype, device=weights.device)
        total[(slice(None), *inside)] += y[(slice(None), *window)] * g
        norm[tuple(inside)] += g
    if total is None:
        raise ValueError(f"no window touches the region {list(region)}")
    return total / norm


class WindowCache:
    """Computed windows, kept until every block touching them has used them.

    Thread-safe: :meth:`claim` hands each missing window to exactly one caller,
    who computes it and :meth:`put`s it (or :meth:`fail`s); others wait on its
    future. A caller first computes all it claimed, then waits, so no two wait on
    each other. Beyond `max_bytes`, the least recently used windows go (and are
    recomputed if needed again).

    Args:
        uses: how many blocks touch a window (it is dropped after that many releases).
        max_bytes: the most bytes of windows kept.

    """

    def __init__(self, uses: Callable[[Start], int], max_bytes: int = CACHE_BYTES) -> None:
        self.uses = uses
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._done: OrderedDict[Start, torch.Tensor] = OrderedDict()
        self._left: dict[Start, int] = {}
        self._pending: dict[Start, Future[torch.Tensor]] = {}
        self._bytes = 0

    def claim(self, starts: Sequence[Start]) -> tuple[list[Start], dict[Start, Future]]:
        """The windows the caller must compute, and futures of all of `starts`."""
        mine, futures = [], {}
        with self._lock:
            for start in starts:
                if start in self._done:
                    self._done.move_to_end(start)
                    future: Future[torch.Tensor] = Future()
                    future.set_result(self._done[start])
                elif start in self._pending:
                    future = self._pending[start]
                else:
                    future = self._pending[start] = Future()
                    mine.append(start)
                futures[start] = future
        return mine, futures

    def put(self, start: Start, output: torch.Tensor) -> None:
        """A claimed window's output, for the blocks that wait for it or will need it."""
        size = output.element_size() * output.nelement()
        with self._lock:
            future = self._pending.pop(start)
            self._left.setdefault(start, self.uses(start))
            if size <= self.max_bytes:
                self._done[start] = output
                self._bytes += size
                while self._bytes > self.max_bytes:
                    self._drop(next(iter(self._done)))
        future.set_result(output)

    def fail(self, starts: Sequence[Start], error: BaseException) -> None:
        """Windows a caller claimed but could not compute: their waiters get `error`."""
        with self._lock:
            futures = [self._pending.pop(s) for s in starts if s in self._pending]
        for future in futures:
            future.set_exception(error)

    def release(self, starts: Sequence[Start]) -> None:
        """A block used these windows; each goes once all blocks touching it have."""
        with self._lock:
            for start in starts:
                left = self._left.get(start, self.uses(start)) - 1
                self._left[start] = left
                if left <= 0:
                    self._left.pop(start)
                    if start in self._done:
                        self._drop(start)

    def _drop(self, start: Start) -> None:
        output = self._done.pop(start)
        self._bytes -= output.element_size() * output.nelement()

    @property
    def nbytes(self) -> int:
        """Bytes of windows kept now."""
        return self._bytes
