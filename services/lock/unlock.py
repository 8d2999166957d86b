"""Database unlock: undo the lock in force, with a reason and two approvers who are not the
requester. Nothing is deleted: the lock's files stay in the store as they were; the unlock is
an event in the log (so the audit trail shows it) and a record beside the lock in the store
(so an analyst with only the store sees it too)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from services.events import utc_now
from services.lock.errors import LockRefusedError
from services.lock.lock import lock_event, lock_record, published_lock, verified_manifest
from services.lock.snapshot import file_entries
from services.store.errors import ObjectLockedError

if TYPE_CHECKING:
    from services.lock.sources import LockSources

MIN_APPROVERS = 2
RECORD = "unlock.json"


def unlock_prefix(study: str, lock_id: str) -> str:
    return f"unlocks/{study}/{lock_id}"


def check_unlock(
    reason: str, requested_by: str, approvers: Sequence[str]
) -> tuple[str, str, list[str]]:
    """The request cleaned up, or :class:`LockRefusedError` saying what is missing."""
    reason, requested_by = reason.strip(), requested_by.strip()
    names = [a.strip() for a in approvers if a and a.strip()]
    distinct = {a.lower() for a in names}
    if not reason:
        raise LockRefusedError("an unlock needs a reason (--reason)")
    if not requested_by:
        raise LockRefusedError("an unlock needs who requests it (--by)")
    if requested_by.lower() in distinct:
        raise LockRefusedError(
            f"unlock refused: {requested_by} requested it and cannot also approve it; "
            f"name {MIN_APPROVERS} other approvers (--approvers a,b)"
        )
    if len(distinct) < MIN_APPROVERS or len(distinct) != len(names):
        raise LockRefusedError(
            f"unlock refused: it needs {MIN_APPROVERS} distinct approvers other than the "
            f"requester, got {names or 'none'} (--approvers a,b)"
        )
    return reason, requested_by, names


def unlock(
    sources: LockSources,
    study: str,
    lock_id: str,
    reason: str,
    requested_by: str,
    approvers: Sequence[str],
) -> dict[str, Any]:
    """Unlock ``lock_id`` of ``study`` (the lock in force); unlocking again returns the record."""
    reason, requested_by, names = check_unlock(reason, requested_by, approvers)
    record_key = f"{unlock_prefix(study, lock_id)}/{RECORD}"
    published = published_lock(sources, study, lock_id)
    if published is None:
        raise LockRefusedError(
            f"lock {lock_id} of {study} was never published; finish it first "
            f"(trigger database_lock again with the same request) and unlock after"
        )
    verified_manifest(sources, study, lock_id, published["manifest_sha256"])
    locks = sources.lock_events(study).filter(pl.col("action").is_in(["LOCK", "UNLOCK"]))
    mine = locks.filter(pl.col("lock_id") == lock_id)
    if mine["action"][-1] == "UNLOCK":
        if sources.store.exists(record_key):
            return json.loads(sources.store.read(record_key)) | {"already_unlocked": True}
    elif locks["lock_id"][-1] != lock_id:
        raise LockRefusedError(
            f"lock {lock_id} of {study} is not the lock in force ({locks['lock_id'][-1]} is); "
            "unlock that one"
        )
    record = lock_record(
        sources,
        study,
        lock_id,
        "UNLOCK",
        requested_by=requested_by,
        reason=reason,
        at=utc_now(),
        approvers=names,
    )
    record = _record_in_store(sources, study, lock_id, record)
    sources.publish([lock_event(study, record)])
    return record


def _record_in_store(
    sources: LockSources, study: str, lock_id: str, record: dict[str, Any]
) -> dict[str, Any]:
    """Write the unlock record once; a re-run after a crash reuses the one already written."""
    data = json.dumps(record, indent=2).encode()
    manifest = {"files": file_entries({RECORD: data})}
    try:
        sources.store.write_snapshot(
            unlock_prefix(study, lock_id), {RECORD: data}, json.dumps(manifest).encode()
        )
    except ObjectLockedError:
        return json.loads(sources.store.read(f"{unlock_prefix(study, lock_id)}/{RECORD}"))
    return record
