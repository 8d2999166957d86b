"""Analysis on locked snapshots: read a lock from any store, verified, as Polars frames."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

    from services.config import Settings


def open_locked(
    study: str, lock_id: str, settings: Settings | None = None, receipt: str | None = None
) -> dict[str, pl.LazyFrame]:
    """Every table and event kind of the lock as LazyFrames, after every file's sha256 matched
    the manifest and, with ``receipt`` (the lock's manifest sha256, printed by ``tract lock``),
    the manifest matched the receipt (raises ``SnapshotTamperedError`` otherwise). The store
    comes from ``settings`` or the environment (``TRACT_STORE``, ``TRACT_S3_*``); no event log
    is needed.
    """
    from services.config import Settings
    from services.lock.snapshot import open_lock
    from services.store import open_store

    store = open_store(settings or Settings.from_env())
    return open_lock(store, study, lock_id, receipt).lazy()
