"""Opening an MLflow sqlite store that several training jobs may create at once.

MLflow creates a sqlite store's tables on first use: it makes the initial tables,
then runs its alembic migrations (`ALTER TABLE metrics ADD COLUMN step ...`).
Nothing stops two processes doing so together, so jobs started at once on a fresh
folder crash (`duplicate column name: step`, `table _alembic_tmp_metrics already
exists`). MLflow serialises the same step for its own job and workspace stores
with a file lock (`mlflow.store.db.utils._safe_initialize_tables`, a lock in the
machine's temp folder); the tracking store does not. :func:`prepare_store` holds a
lock next to the database (`mlflow.db.lock`, an empty file) while MLflow
opens the store, so one process creates the tables and the others wait, then
find them. The lock sits on the store's own file system, so jobs on several
machines sharing it wait for each other too. A tracking server (`http://...`)
creates its store once, itself: nothing to do.
"""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout

# Creating the tables takes a second or two; a job that waits longer is stuck behind
# something other than table creation.
LOCK_TIMEOUT_S = 300.0


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, or None for other stores.

    Example:
        >>> sqlite_path("sqlite:////data/outputs/mlflow.db")
        PosixPath('/data/outputs/mlflow.db')
        >>> sqlite_path("http://127.0.0.1:5000") is None
        True

    """
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///"))


def prepare_store(tracking_uri: str) -> None:
    """Open the store once under a file lock, so that only one process creates its tables.

    Cheap once the store exists (a lock and a look at the table names); a no-op
    for stores other than sqlite.

    Args:
        tracking_uri: an MLflow tracking URI, e.g. `sqlite:////data/outputs/mlflow.db`.

    Raises:
        TimeoutError: one line naming the lock file, when it stays held for
            :data:`LOCK_TIMEOUT_S` seconds.

    """
    db = sqlite_path(tracking_uri)
    if db is None:
        return
    from mlflow.tracking import MlflowClient

    lock = db.with_name(f"{db.name}.lock")
    try:
        with FileLock(lock, timeout=LOCK_TIMEOUT_S):
            # The first call opens the store: MLflow creates and migrates its tables.
            MlflowClient(tracking_uri).search_experiments(max_results=1)
    except Timeout:
        raise TimeoutError(
            f"{lock}: held by another process for {LOCK_TIMEOUT_S:.0f}s while it creates the "
            "MLflow store; is a job stuck?"
        ) from None
