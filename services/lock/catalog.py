"""What a store holds: locks (``locks/<study>/<id>``), their unlock records, and the dated,
unlocked snapshots the scheduler writes (``snapshots/<study>/<stamp>``). Each is trusted only
with its manifest, and read only after every file's sha256 matches it.

Listing never stops at a damaged entry: every lock the log knows is listed (even one whose
files are gone), each with what was found, so one bad lock hides no other.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from services.events import utc_now
from services.lock.errors import LockError, LockNotFoundError
from services.lock.lock import code_version, freeze_cut
from services.lock.snapshot import (
    Snapshot,
    current_snapshot,
    file_entries,
    parse_manifest,
    sha256,
    snapshot_files,
    verified_frames,
)
from services.lock.unlock import RECORD, unlock_prefix
from services.store import MANIFEST, ObjectStore
from services.store.errors import ObjectLockedError, ObjectNotFoundError, StoreError

if TYPE_CHECKING:
    from services.lock.sources import LockSources

VERIFIED, DAMAGED, MISSING = "verified", "damaged", "missing"


@dataclass(frozen=True)
class Entry:
    """One lock or dated snapshot, as ``tract snapshot list`` shows it."""

    kind: str  # "lock" or "snapshot"
    study: str
    id: str
    at: str
    level: str | None
    status: str  # LOCKED, UNLOCKED or UNLOCKED_SNAPSHOT
    location: str
    integrity: str = VERIFIED  # verified | damaged | missing
    problem: str | None = None
    receipt: str | None = None  # the manifest's sha256

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dated_prefix(study: str, stamp: str) -> str:
    return f"snapshots/{study}/{stamp}"


def stamp_of(when: datetime) -> str:
    """A sortable, path-safe UTC stamp (``20261126T020000Z``)."""
    return when.strftime("%Y%m%dT%H%M%SZ")


def write_dated_snapshot(sources: LockSources, study: str, stamp: str) -> dict[str, Any]:
    """Write the study as it is now under ``snapshots/<study>/<stamp>`` (no retention, no
    conflict check: a working copy, not a lock). The same stamp again returns the first."""
    prefix = dated_prefix(study, stamp)
    store = sources.store
    if store.exists(f"{prefix}/{MANIFEST}"):
        return json.loads(store.read(f"{prefix}/{MANIFEST}")) | {"already_written": True}
    cut = freeze_cut(sources)
    positions = cut["positions"]
    snapshot = current_snapshot(sources, study, positions)
    taken_at = utc_now()
    report = snapshot.report(sources.rules.confidence_level) | {"snapshot": stamp}
    files = snapshot_files(snapshot, report, sources.rules)
    manifest = {
        "kind": "snapshot",
        "study": study,
        "snapshot": stamp,
        "taken_at": taken_at,
        "positions": positions,
        "chain": cut["chain"],
        "rule_set": {"id": sources.rules.id, "version": sources.rules.version},
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
        data = store.read(f"{prefix}/{MANIFEST}")
    except ObjectNotFoundError:
        raise LockNotFoundError(
            f"no snapshot {stamp} for study {study} at {store.location(prefix)}; "
            "list them with `tract snapshot list`"
        ) from None
    manifest = parse_manifest(data, store.location(f"{prefix}/{MANIFEST}"))
    tables, events, files = verified_frames(store, prefix, manifest)
    meta = {
        "source": "snapshot",
        "snapshot": stamp,
        "rule_set": (manifest.get("rule_set") or {}).get("id"),
        "rule_set_version": (manifest.get("rule_set") or {}).get("version"),
    }
    return Snapshot(study, tables, events, meta, files)


def check_snapshot(
    store: ObjectStore, prefix: str, expected_sha256: str | None
) -> tuple[dict[str, Any] | None, str, str | None, str | None]:
    """(manifest, integrity, problem, receipt) of the snapshot under ``prefix``: every file
    read back and hashed; nothing raised."""
    key = f"{prefix}/{MANIFEST}"
    try:
        data = store.read(key)
    except ObjectNotFoundError:
        return None, MISSING, f"{store.location(key)} is missing", None
    except StoreError as exc:
        return None, DAMAGED, str(exc), None
    receipt = sha256(data)
    try:
        manifest = parse_manifest(data, store.location(key))
        if expected_sha256 and receipt != expected_sha256:
            return manifest, DAMAGED, "the manifest is not the one the LOCK event names", receipt
        verified_frames(store, prefix, manifest, decode=False)
    except (LockError, StoreError) as exc:
        return None, DAMAGED, str(exc), receipt
    return manifest, VERIFIED, None, receipt


def list_snapshots(
    store: ObjectStore, study: str | None = None, log_locks: pl.DataFrame | None = None
) -> list[Entry]:
    """Every lock and dated snapshot, oldest first, each checked.

    ``log_locks``: the log's lock events (``study``, ``lock_id``, ``action``, ``at``, ``level``,
    ``manifest_sha256``) when the log is reachable; every lock it published is listed, whatever
    the store holds, and the store's manifests are checked against it.
    """
    entries: list[Entry] = []
    unlocked = {
        tuple(key.split("/")[1:3])
        for key in store.list("unlocks")
        if key.endswith(f"/{RECORD}") and store.exists(key.replace(RECORD, MANIFEST))
    }
    published: dict[tuple[str, str], dict[str, Any]] = {}
    if log_locks is not None and log_locks.height:
        for row in log_locks.sort("offset").iter_rows(named=True):
            if study and row["study"] != study:
                continue
            place = (row["study"], row["lock_id"])
            if row["action"] == "LOCK":
                published.setdefault(place, row)
            elif row["action"] == "UNLOCK":
                unlocked.add(place)
    seen: set[tuple[str, str]] = set()
    for top in ("locks", "snapshots"):
        prefixes = sorted(
            {
                "/".join(key.split("/")[:3])
                for key in store.list(top)
                if len(key.split("/")) >= 4 and (not study or key.split("/")[1] == study)
            }
        )
        for prefix in prefixes:
            _, owner, name = prefix.split("/")
            event = published.get((owner, name)) if top == "locks" else None
            manifest, integrity, problem, receipt = check_snapshot(
                store, prefix, event["manifest_sha256"] if event else None
            )
            if manifest is None and integrity == MISSING and event is None:
                continue  # files of a lock that never finished, with nothing to say about it
            manifest = manifest or {}
            if top == "locks":
                seen.add((owner, name))
                entries.append(
                    Entry(
                        "lock",
                        owner,
                        name,
                        str(manifest.get("locked_at") or _at(event)),
                        manifest.get("level") or (event or {}).get("level"),
                        "UNLOCKED" if (owner, name) in unlocked else "LOCKED",
                        store.location(prefix),
                        integrity,
                        problem,
                        receipt,
                    )
                )
            else:
                entries.append(
                    Entry(
                        "snapshot",
                        owner,
                        name,
                        str(manifest.get("taken_at") or ""),
                        None,
                        "UNLOCKED_SNAPSHOT",
                        store.location(prefix),
                        integrity,
                        problem,
                        receipt,
                    )
                )
    for (owner, name), event in published.items():
        if (owner, name) in seen:
            continue
        prefix = f"locks/{owner}/{name}"
        entries.append(
            Entry(
                "lock",
                owner,
                name,
                _at(event),
                event.get("level"),
                "UNLOCKED" if (owner, name) in unlocked else "LOCKED",
                store.location(prefix),
                MISSING,
                f"the log published this lock but {store.location(prefix)} holds none of its files",
                None,
            )
        )
    return sorted(entries, key=lambda e: (e.study, e.at, e.id))


def _at(event: dict[str, Any] | None) -> str:
    if not event:
        return ""
    at = event["at"]
    return at.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(at, "strftime") else str(at)


def unlock_record(store: ObjectStore, study: str, lock_id: str) -> dict[str, Any] | None:
    """The unlock record stored beside a lock, if it was unlocked."""
    key = f"{unlock_prefix(study, lock_id)}/{RECORD}"
    if not store.exists(f"{unlock_prefix(study, lock_id)}/{MANIFEST}"):
        return None
    return json.loads(store.read(key))
