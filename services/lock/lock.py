"""Database lock: refuse while conflicts are open, else freeze an immutable, hash-verified
snapshot of the study at a recorded cut of the event log.

A lock is a chain of steps, each safe to run again, so an orchestrator (the ``database_lock``
DAG) can run them as separate tasks and retry any one of them:

    check_request -> check_conflicts -> freeze_cut -> materialise -> (validate, GX)
        -> write_lock -> verify_lock -> publish_lock

Between steps only small values travel (the cut, a staging path); the Parquet files wait in a
staging folder. :func:`take_lock` composes the steps for the CLI (leaving the conflict check
to materialise, which checks at the cut anyway: one adjudication, not two). The same lock id
again returns the existing lock and publishes nothing new.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from services.adjudicator.errors import AdjudicatorError, LockBlockedError, LockRefusedError
from services.adjudicator.snapshot import (
    Snapshot,
    current_snapshot,
    file_entries,
    lock_prefix,
    open_lock,
    read_manifest,
    sha256,
    snapshot_files,
)
from services.events import utc_now
from services.store import MANIFEST
from services.store.errors import ObjectLockedError

if TYPE_CHECKING:
    from services.platform import Platform

LOCK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LEVELS = ("soft", "hard")


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


@dataclass(frozen=True)
class LockRequest:
    """What a data manager asks for; checked before anything is computed."""

    study: str
    lock_id: str
    reason: str
    requested_by: str
    level: str = "soft"

    def __post_init__(self) -> None:
        if not self.study.strip():
            raise AdjudicatorError("a lock needs a study (--study)")
        if not LOCK_ID.match(self.lock_id):
            raise AdjudicatorError(
                f"lock id {self.lock_id!r} must be letters, digits, '.', '_' or '-' (max 64)"
            )
        if not self.reason.strip() or not self.requested_by.strip():
            raise AdjudicatorError("a lock needs a reason and who requested it (--reason, --by)")
        if self.level not in LEVELS:
            raise AdjudicatorError(f"lock level must be soft or hard, got {self.level!r}")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


# steps ----------------------------------------------------------------------------------------
def lock_state(platform: Platform, study: str, lock_id: str) -> str | None:
    """``LOCK`` or ``UNLOCK`` (the lock's latest event in the log), or None if never published."""
    events = platform.records("lock", study).collect()
    mine = events.filter(pl.col("lock_id") == lock_id).sort("offset")
    return None if mine.is_empty() else str(mine["action"][-1])


def check_request(platform: Platform, request: LockRequest) -> dict[str, Any] | None:
    """The existing lock's manifest when ``lock_id`` was already written (idempotent re-run),
    else None. An id that was unlocked is refused: a new lock needs a new id."""
    if not platform.store.exists(f"{lock_prefix(request.study, request.lock_id)}/{MANIFEST}"):
        return None
    if lock_state(platform, request.study, request.lock_id) == "UNLOCK":
        raise LockRefusedError(
            f"lock {request.lock_id} of {request.study} was unlocked; its files stay as they "
            "were. Lock again under a new lock id"
        )
    return read_manifest(platform.store, request.study, request.lock_id)


def check_conflicts(
    platform: Platform, study: str, upto: dict[str, int] | None = None
) -> dict[str, int]:
    """Raise :class:`LockBlockedError` listing every open conflict; else the counts by status."""
    conflicts = platform.adjudicate(study, upto).conflicts
    open_conflicts = conflicts.filter(pl.col("status") == "OPEN")
    if open_conflicts.height:
        raise LockBlockedError(blocked_message(open_conflicts))
    return dict(conflicts.group_by("status").len().sort("status").iter_rows())


def freeze_cut(platform: Platform) -> dict[str, int]:
    """The log positions the lock covers: every event before them, none after."""
    return platform.source.positions()


def staging_dir(home: Path, study: str, lock_id: str) -> Path:
    """Where a lock's Parquet waits between materialise and write (under the platform home)."""
    return Path(home) / "staging" / "locks" / study / lock_id


def materialise(
    platform: Platform,
    request: LockRequest,
    positions: dict[str, int],
    staging: Path,
    retention_days: int | None = None,
) -> Path:
    """Compute the study at the cut and stage its files and manifest in ``staging``.

    Conflicts are checked again at the cut: data that arrived after ``check_conflicts`` may
    have raised new ones. Staging replaces any earlier attempt in one rename.
    """
    snapshot = current_snapshot(platform, request.study, upto=positions)
    open_conflicts = snapshot.tables["conflicts"].filter(pl.col("status") == "OPEN")
    if open_conflicts.height:
        raise LockBlockedError(blocked_message(open_conflicts))
    locked_at = utc_now()
    report = snapshot.report(platform.rules.confidence_level) | {
        "lock_id": request.lock_id,
        "locked_at": locked_at,
    }
    files = snapshot_files(snapshot, report)
    retain_until = None
    if request.level == "hard":
        days = _retention_days() if retention_days is None else retention_days
        retain_until = (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)
    manifest = {
        "lock_id": request.lock_id,
        "study": request.study,
        "locked_at": locked_at,
        "requested_by": request.requested_by,
        "reason": request.reason,
        "level": request.level,
        "retain_until": retain_until.isoformat().replace("+00:00", "Z") if retain_until else None,
        "positions": positions,
        "rule_set": {
            "id": platform.rules.id,
            "version": platform.rules.version,
            "sha256": platform.rules.sha256,
        },
        "code_version": code_version(),
        "row_counts": {name: _rows(name, snapshot) for name in files if name.endswith(".parquet")},
        "files": file_entries(files),
    }
    return stage(staging, files, json.dumps(manifest, indent=2).encode())


def stage(staging: Path, files: dict[str, bytes], manifest: bytes) -> Path:
    """Write files and manifest into ``staging``, replacing an earlier attempt atomically."""
    staging = Path(staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging.parent / f".{staging.name}.{uuid.uuid4().hex}"
    for name, data in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(data)
    (tmp / MANIFEST).write_bytes(manifest)
    if staging.exists():
        shutil.rmtree(staging)
    tmp.rename(staging)
    return staging


def read_staged(staging: Path) -> tuple[dict[str, bytes], bytes]:
    """The staged files and manifest bytes, each file checked against the staged manifest."""
    manifest_path = Path(staging) / MANIFEST
    if not manifest_path.is_file():
        raise AdjudicatorError(
            f"nothing staged at {staging}: run the materialise step (or the whole DAG) again"
        )
    manifest_bytes = manifest_path.read_bytes()
    files: dict[str, bytes] = {}
    for name, expected in json.loads(manifest_bytes)["files"].items():
        data = (Path(staging) / name).read_bytes()
        if sha256(data) != expected["sha256"]:
            raise AdjudicatorError(
                f"staged file {Path(staging) / name} changed after materialise; run it again"
            )
        files[name] = data
    return files, manifest_bytes


def write_lock(platform: Platform, study: str, lock_id: str, staging: Path) -> str:
    """Put the staged lock into the store (retained when hard), manifest last; its location.

    Safe to retry: a write that already completed is recognised by its manifest's hash.
    """
    files, manifest_bytes = read_staged(staging)
    manifest = json.loads(manifest_bytes)
    until = manifest.get("retain_until")
    retain_until = datetime.fromisoformat(until.replace("Z", "+00:00")) if until else None
    prefix = lock_prefix(study, lock_id)
    try:
        platform.store.write_snapshot(prefix, files, manifest_bytes, retain_until)
    except ObjectLockedError:
        key = f"{prefix}/{MANIFEST}"
        if not platform.store.exists(key) or platform.store.read(key) != manifest_bytes:
            raise
    return platform.store.location(prefix)


def verify_lock(platform: Platform, study: str, lock_id: str, staging: Path | None = None) -> str:
    """Read every file of the lock back and compare with the manifest (raises on mismatch);
    with ``staging``, also check the stored manifest is the one this run staged. Returns the
    manifest's sha256."""
    open_lock(platform.store, study, lock_id)
    stored = platform.store.read(f"{lock_prefix(study, lock_id)}/{MANIFEST}")
    staged = Path(staging) / MANIFEST if staging is not None else None
    if staged is not None and staged.is_file() and staged.read_bytes() != stored:
        raise LockRefusedError(
            f"the stored manifest of {study}/{lock_id} is not the one this run staged: another "
            "run wrote the same lock id at the same time. Its lock stands; this run changed nothing"
        )
    return sha256(stored)


def lock_record(
    platform: Platform, study: str, lock_id: str, action: str, **changes: Any
) -> dict[str, Any]:
    """The payload of a lock event about ``lock_id``, from its stored manifest (read once):
    as the lock was requested, with ``changes`` (an unlock's who, why, when and approvers)."""
    prefix = lock_prefix(study, lock_id)
    manifest_bytes = platform.store.read(f"{prefix}/{MANIFEST}")
    manifest = json.loads(manifest_bytes)
    return {
        "lock_id": lock_id,
        "action": action,
        "level": manifest["level"],
        "requested_by": manifest["requested_by"],
        "reason": manifest["reason"],
        "at": manifest["locked_at"],
        "positions": json.dumps(manifest["positions"], sort_keys=True),
        "manifest_sha256": sha256(manifest_bytes),
        "approvers": None,
        "location": platform.store.location(prefix),
    } | changes


def publish_lock(platform: Platform, study: str, lock_id: str) -> dict[str, Any]:
    """Publish the lock event from the stored manifest; publishing again adds nothing."""
    from services.platform import lock_event

    payload = lock_record(platform, study, lock_id, "LOCK")
    platform.bus.publish([lock_event(study, payload)])
    return payload


def discard_staging(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


# the whole lock, for the CLI ------------------------------------------------------------------
def take_lock(
    platform: Platform,
    study: str,
    lock_id: str,
    reason: str,
    requested_by: str,
    level: str = "soft",
    retention_days: int | None = None,
    *,
    validate: bool = False,
) -> dict[str, Any]:
    """Lock ``study`` as ``lock_id``; the same lock_id again returns the existing lock.

    ``validate`` runs the Great Expectations gate (``infra/gx``) as the DAG does; it needs the
    ``airflow`` extra, so the CLI leaves it off by default.
    """
    request = LockRequest(study, lock_id, reason, requested_by, level)
    existing = check_request(platform, request)
    if existing is not None:
        verify_lock(platform, study, lock_id)
        publish_lock(platform, study, lock_id)  # completes a lock that crashed before its event
        return existing | {"already_locked": True}
    positions = freeze_cut(platform)
    with tempfile.TemporaryDirectory(prefix="tract-lock-") as tmp:
        staging = materialise(platform, request, positions, Path(tmp) / lock_id, retention_days)
        if validate:
            from services.adjudicator.validation import validate_staged

            validate_staged(staging)
        write_lock(platform, study, lock_id, staging)
        verify_lock(platform, study, lock_id, staging)
        manifest = json.loads((staging / MANIFEST).read_bytes())
    publish_lock(platform, study, lock_id)
    return manifest


def _retention_days() -> int:
    from services.config import Settings

    return Settings.from_env().hard_lock_retention_days


def _rows(name: str, snapshot: Snapshot) -> int:
    key = name.removesuffix(".parquet")
    if key.startswith("events/"):
        return snapshot.events[key.removeprefix("events/")].height
    return snapshot.tables[key].height
