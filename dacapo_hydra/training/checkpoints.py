"""Checkpoint files: every one written atomically, and the newest intact one found again.

Lightning's own save (`TorchCheckpointIO`) writes through an fsspec transaction:
the bytes go to a temporary file in the system's temp folder, then are *moved*
onto the checkpoint, which across file systems is a copy. A full disk during the
copy leaves a truncated `last.ckpt` where an intact one was. :class:`AtomicCheckpointIO`,
the Trainer's checkpoint plugin in every run, writes a temporary file in the
checkpoint's own folder, syncs it to disk and renames it over the old one
(`os.replace`), so a checkpoint is the old file or the new one, never a part:
Lightning's `ModelCheckpoint` saves (`iteration_*.ckpt`, `last.ckpt`) and the
run's `best_<criterion>.ckpt` all go through it. A save that does not fit (a full
disk, a quota, the file-size limit) raises :class:`DiskFull`, whose one line names
the folder, the bytes needed and free, and the checkpoint left intact.

:func:`newest_intact` finds the checkpoint to resume from: the newest that loads,
with a warning naming each one skipped (a truncated file, a copy
cut short).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from pytorch_lightning.plugins.io import CheckpointIO, TorchCheckpointIO

log = logging.getLogger(__name__)


def _umask() -> int:
    """The process's umask (read by setting it, then putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file so that it holds its old content or its new content, never a part.

    The bytes go to a hidden temporary file in the same folder (`.<name>.<random>.tmp`),
    which is flushed, synced to disk and renamed over `path`; the folder is synced so
    the rename survives a crash. If writing fails (a full disk, say), the temporary
    file is removed and `path` is untouched.

    Args:
        path: the file to (over)write; its folder must exist.
        write: writes the content to the open binary file it is given.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
        >>> write_atomically(target, lambda f: f.write(b"hello"))
        >>> target.read_bytes()
        b'hello'

    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


# A write that failed for want of room: a full disk, a quota, the file-size limit.
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class _Counter:
    """A write-only file that counts the bytes written to it (the size of a save)."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        """Count `data`."""
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to flush."""


def saved_size(checkpoint: dict[str, Any]) -> int:
    """How many bytes `torch.save(checkpoint, file)` writes."""
    counter = _Counter()
    torch.save(checkpoint, counter)  # type: ignore[arg-type]
    return counter.size


def no_room(err: BaseException) -> OSError | None:
    """The `OSError` of a full disk (or quota, or file-size limit) in `err`'s chain, if any.

    `torch.save` reports a failed write as a `RuntimeError` raised from the `OSError`.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in NO_ROOM:
            return current
        current = current.__cause__ or current.__context__
    return None


class DiskFull(OSError):
    """A checkpoint did not fit: its folder, the bytes it needed and were free, what is left.

    The write was atomic (:func:`write_atomically`), so every checkpoint already in the
    folder is intact. :attr:`one_line` says so in one line.

    Args:
        path: the checkpoint that could not be written.
        needed: its size in bytes.
        cause: the write's `OSError` (ENOSPC, EDQUOT or EFBIG).

    """

    def __init__(self, path: Path, needed: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror, str(path))
        self.path, self.needed = path, needed
        self.free = shutil.disk_usage(path.parent).free
        newest = next(iter(resume_candidates(path.parent)), None)
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        why = (
            f" (the file-size limit, ulimit -f, is {limit} bytes)"
            if cause.errno == errno.EFBIG and limit != resource.RLIM_INFINITY
            else ""
        )
        kept = (
            f"the previous {path.name} is intact"
            if path.exists()
            else f"the previous checkpoint {newest.name} is intact"
            if newest is not None
            else "no earlier checkpoint was written"
        )
        self.one_line = (
            f"{cause.strerror}{why}: checkpoint {path.name} needs {needed} bytes "
            f"({needed / 2**20:.1f} MiB) in {path.parent}, {self.free} bytes "
            f"({self.free / 2**20:.1f} MiB) are free; {kept}"
        )

    def __str__(self) -> str:
        return self.one_line


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's `TorchCheckpointIO`, with local saves made atomic (:func:`write_atomically`).

    Given to `pl.Trainer(plugins=[...])`, it writes every checkpoint the Trainer
    saves: `ModelCheckpoint`'s and `trainer.save_checkpoint(...)`'s. Remote paths
    (`s3://...`) keep Lightning's own save.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        """Save `checkpoint` to `path` atomically (see the class)."""
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_atomically(path, lambda file: torch.save(checkpoint, file))
        except Exception as err:
            cause = no_room(err)
            if cause is None:
                raise
            raise DiskFull(path, saved_size(checkpoint), cause) from err


def load_state(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint's content (on the CPU, tensors only).

    Raises:
        ValueError: not a Lightning checkpoint (no `global_step` or `state_dict`).
        Exception: whatever `torch.load` raises for a damaged file.

    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "global_step" not in state or "state_dict" not in state:
        raise ValueError("not a Lightning checkpoint (no global_step or state_dict)")
    return state


def resume_candidates(folder: str | Path) -> list[Path]:
    """The checkpoints a run may resume from, newest first.

    `last.ckpt` and the periodic ones; not `best_<criterion>.ckpt` (saved in the
    middle of a validation) nor temporary files.
    """
    found = [
        p for p in Path(folder).glob("*.ckpt") if p.is_file() and not p.name.startswith("best_")
    ]
    # Newest first; at equal times last.ckpt first (it is written after the periodic one).
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"), reverse=True)


def newest_intact(folder: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in `folder` that loads, and its content; None if none does.

    Every newer checkpoint that does not load is skipped with a warning naming
    the file and what is wrong with it.
    """
    for path in resume_candidates(folder):
        try:
            return path, load_state(path)
        except Exception as err:  # a damaged file: torch.load's errors vary by damage
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            log.warning("resume: skipped %s: it does not load (%s)", path, reason)
    return None


def with_atomic_io(arguments: dict[str, Any]) -> list[Any]:
    """The Trainer's plugins (`lightning.plugins`, popped), with :class:`AtomicCheckpointIO` added.

    A configured `CheckpointIO` plugin is kept instead.
    """
    given = arguments.pop("plugins", None)
    plugins = list(given) if isinstance(given, list | tuple) else [] if given is None else [given]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins
