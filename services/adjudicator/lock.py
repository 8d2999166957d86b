"""Database lock: refuse while conflicts are open, else freeze an immutable, hash-verified
snapshot of the study at a recorded cut of the event log."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from services.adjudicator.errors import AdjudicatorError, LockBlockedError
from services.adjudicator.snapshot import (
    current_snapshot,
    lock_prefix,
    read_manifest,
    sha256,
    snapshot_files,
)
from services.events import utc_now
from services.store import MANIFEST

if TYPE_CHECKING:
    from services.platform import Platform

LOCK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def code_version() -> str:
    """The package version and, in a git checkout, the commit."""
    version = metadata.version("tract-adjudication")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{version}+g{commit}"
    except (OSError, subprocess.SubprocessError):
        return version


def blocked_message(open_conflicts: pl.DataFrame) -> str:
    counts = open_conflicts.group_by("type").len().sort("type")
    summary = ", ".join(f"{t} x{n}" for t, n in counts.iter_rows())
    lines = "\n".join(
        f"  {r['conflict_id']}  {r['type']}  {r['subject_id']}/{r['tract_id']}  {r['detail']}"
        for r in open_conflicts.iter_rows(named=True)
    )
    return (
        f"lock blocked: {open_conflicts.height} open conflict(s) ({summary}); "
        f"resolve them in the committee queue (`tract conflicts`, `tract decide`)\n{lines}"
    )


def take_lock(
    platform: Platform,
    study: str,
    lock_id: str,
    reason: str,
    requested_by: str,
    level: str = "soft",
    retention_days: int = 3650,
) -> dict[str, Any]:
    """Lock ``study`` as ``lock_id``; the same lock_id again returns the existing lock."""
    if not LOCK_ID.match(lock_id):
        raise AdjudicatorError(
            f"lock id {lock_id!r} must be letters, digits, '.', '_' or '-' (max 64)"
        )
    if not reason.strip() or not requested_by.strip():
        raise AdjudicatorError("a lock needs a reason and who requested it (--reason, --by)")
    if level not in ("soft", "hard"):
        raise AdjudicatorError(f"lock level must be soft or hard, got {level!r}")
    store = platform.store
    prefix = lock_prefix(study, lock_id)
    if store.exists(f"{prefix}/{MANIFEST}"):
        existing = read_manifest(store, study, lock_id)
        return existing | {"already_locked": True}

    positions = platform.source.positions()
    snapshot = current_snapshot(platform, study, upto=positions)
    open_conflicts = snapshot.tables["conflicts"].filter(pl.col("status") == "OPEN")
    if open_conflicts.height:
        raise LockBlockedError(blocked_message(open_conflicts))

    locked_at = utc_now()
    report = snapshot.report(platform.rules.confidence_level) | {
        "lock_id": lock_id,
        "locked_at": locked_at,
    }
    files = snapshot_files(snapshot, report)
    manifest = {
        "lock_id": lock_id,
        "study": study,
        "locked_at": locked_at,
        "requested_by": requested_by,
        "reason": reason,
        "level": level,
        "positions": positions,
        "rule_set": {
            "id": platform.rules.id,
            "version": platform.rules.version,
            "sha256": platform.rules.sha256,
        },
        "code_version": code_version(),
        "row_counts": {name: _rows(name, snapshot) for name in files if name.endswith(".parquet")},
        "files": {
            name: {"sha256": sha256(data), "bytes": len(data)} for name, data in files.items()
        },
    }
    retain_until = datetime.now(UTC) + timedelta(days=retention_days) if level == "hard" else None
    store.write_snapshot(prefix, files, json.dumps(manifest, indent=2).encode(), retain_until)
    verify_lock(platform, study, lock_id)

    from services.platform import lock_event

    event_payload = {
        "lock_id": lock_id,
        "action": "LOCK",
        "level": level,
        "requested_by": requested_by,
        "reason": reason,
        "at": locked_at,
        "positions": json.dumps(positions, sort_keys=True),
        "manifest_sha256": sha256(store.read(f"{prefix}/{MANIFEST}")),
        "approvers": None,
        "location": store.location(prefix),
    }
    platform.bus.publish([lock_event(study, event_payload)])
    return manifest


def verify_lock(platform: Platform, study: str, lock_id: str) -> None:
    """Read every file of the lock back and compare with the manifest (raises on mismatch)."""
    from services.adjudicator.snapshot import open_lock

    open_lock(platform.store, study, lock_id)


def _rows(name: str, snapshot: Any) -> int:
    key = name.removesuffix(".parquet")
    if key.startswith("events/"):
        return snapshot.events[key.removeprefix("events/")].height
    return snapshot.tables[key].height
