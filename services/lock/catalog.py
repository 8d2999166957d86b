"""What a store holds: locks (``locks/<study>/<id>``), their unlock records, and the dated,
unlocked snapshots the scheduler writes (``snapshots/<study>/<stamp>``). Each is trusted only
with its manifest, and read only after every file's sha256 matches it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.adjudicator.errors import LockNotFoundError
from services.adjudicator.lock import code_version, freeze_cut
from services.adjudicator.snapshot import (
    Snapshot,
    current_snapshot,
    file_entries,
    snapshot_files,
    verified_frames,
)
from services.adjudicator.unlock import RECORD, unlock_prefix
from services.events import utc_now
from services.store import MANIFEST, ObjectStore
from services.store.errors import ObjectLockedError, ObjectNotFoundError

if TYPE_CHECKING:
    from services.platform import Platform


@dataclass(frozen=True)
class Entry:
    """One published snapshot or lock, as ``tract snapshot list`` shows it."""

    kind: str  # "lock" or "snapshot"
    study: str
    id: str
    at: str
    level: str | None
    status: str  # LOCKED, UNLOCKED or UNLOCKED_SNAPSHOT
    location: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dated_prefix(study: str, stamp: str) -> str:
    return f"snapshots/{study}/{stamp}"


def stamp_of(when: datetime) -> str:
    """A sortable, path-safe UTC stamp (``20261126T020000Z``)."""
    return when.strftime("%Y%m%dT%H%M%SZ")


def write_dated_snapshot(platform: Platform, study: str, stamp: str) -> dict[str, Any]:
    """Write the study as it is now under ``snapshots/<study>/<stamp>`` (no retention, no
    conflict check: a working copy, not a lock). The same stamp again returns the first."""
    prefix = dated_prefix(study, stamp)
    store = platform.store
    if store.exists(f"{prefix}/{MANIFEST}"):
        return json.loads(store.read(f"{prefix}/{MANIFEST}")) | {"already_written": True}
    positions = freeze_cut(platform)
    snapshot = current_snapshot(platform, study, upto=positions)
    taken_at = utc_now()
    report = snapshot.report(platform.rules.confidence_level) | {"snapshot": stamp}
    files = snapshot_files(snapshot, report)
    manifest = {
        "kind": "snapshot",
        "study": study,
        "snapshot": stamp,
        "taken_at": taken_at,
        "positions": positions,
        "rule_set": {"id": platform.rules.id, "version": platform.rules.version},
        "code_version": code_version(),
        "open_conflicts": snapshot.tables["conflicts"]
        .filter(snapshot.tables["conflicts"]["status"] == "OPEN")
        .height,
        "files": file_entries(files),
    }
    try:
        store.write_snapshot(prefix, files, json.dumps(manifest, indent=2).encode())
    except ObjectLockedError:  # a concurrent run of the same stamp finished first
        return json.loads(store.read(f"{prefix}/{MANIFEST}")) | {"already_written": True}
    return manifest | {"location": store.location(prefix)}


def open_dated(store: ObjectStore, study: str, stamp: str) -> Snapshot:
    """A dated snapshot, verified file by file like a lock."""
    prefix = dated_prefix(study, stamp)
    try:
        manifest = json.loads(store.read(f"{prefix}/{MANIFEST}"))
    except ObjectNotFoundError:
        raise LockNotFoundError(
            f"no snapshot {stamp} for study {study} at {store.location(prefix)}; "
            "list them with `tract snapshot list`"
        ) from None
    tables, events, files = verified_frames(store, prefix, manifest)
    meta = {
        "source": "snapshot",
        "snapshot": stamp,
        "rule_set": manifest["rule_set"]["id"],
        "rule_set_version": manifest["rule_set"]["version"],
    }
    return Snapshot(study, tables, events, meta, files)


def list_snapshots(store: ObjectStore, study: str | None = None) -> list[Entry]:
    """Every published lock and dated snapshot (those with a manifest), oldest first."""
    entries: list[Entry] = []
    unlocked = {
        tuple(key.split("/")[1:3])
        for key in store.list("unlocks")
        if key.endswith(f"/{RECORD}") and store.exists(key.replace(RECORD, MANIFEST))
    }
    for top in ("locks", "snapshots"):
        for key in store.list(top):
            parts = key.split("/")
            if len(parts) != 4 or parts[3] != MANIFEST or (study and parts[1] != study):
                continue
            manifest = json.loads(store.read(key))
            prefix = "/".join(parts[:3])
            if top == "locks":
                status = "UNLOCKED" if (parts[1], parts[2]) in unlocked else "LOCKED"
                entry = Entry(
                    "lock",
                    parts[1],
                    parts[2],
                    manifest["locked_at"],
                    manifest["level"],
                    status,
                    store.location(prefix),
                )
            else:
                entry = Entry(
                    "snapshot",
                    parts[1],
                    parts[2],
                    manifest["taken_at"],
                    None,
                    "UNLOCKED_SNAPSHOT",
                    store.location(prefix),
                )
            entries.append(entry)
    return sorted(entries, key=lambda e: (e.study, e.at, e.id))


def unlock_record(store: ObjectStore, study: str, lock_id: str) -> dict[str, Any] | None:
    """The unlock record stored beside a lock, if it was unlocked."""
    key = f"{unlock_prefix(study, lock_id)}/{RECORD}"
    if not store.exists(f"{unlock_prefix(study, lock_id)}/{MANIFEST}"):
        return None
    return json.loads(store.read(key))
