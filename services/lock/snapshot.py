"""Snapshots: the frames a lock freezes, written as Parquet with a hash-carrying manifest, and
read back only after every file's sha256 matches."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

import schemas
from services.adjudicator.errors import AdjudicatorError, LockNotFoundError, SnapshotTamperedError
from services.adjudicator.report import build_report
from services.adjudicator.state import EVIDENCE_KINDS, current
from services.store import MANIFEST, ObjectStore
from services.store.errors import ObjectNotFoundError

if TYPE_CHECKING:
    from services.adjudicator.engine import Adjudication
    from services.platform import Platform

TABLES = ("tract_outcomes", "patient_outcomes", "conflicts", "audit")
EVENT_KINDS = (
    *EVIDENCE_KINDS,
    "committee_decision",
    "conflict_change",
    "rejected_row",
    "ingest_run",
)


@dataclass(frozen=True)
class Snapshot:
    """The frames of one study at one cut: outcomes, conflicts, audit and accepted events."""

    study: str
    tables: dict[str, pl.DataFrame]
    events: dict[str, pl.DataFrame]
    meta: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    """A stored snapshot's other verified files (``report.json``), by name."""

    def lazy(self) -> dict[str, pl.LazyFrame]:
        """Every table and event kind as LazyFrames (events under ``events/<kind>``)."""
        frames = {name: frame.lazy() for name, frame in self.tables.items()}
        return frames | {f"events/{kind}": frame.lazy() for kind, frame in self.events.items()}

    def report(self, level: float) -> dict[str, Any]:
        pathology = self.events.get("pathology_report")
        if pathology is None or pathology.is_empty():
            pathology = pl.DataFrame(
                schema=schemas.polars_schema(schemas.contract("pathology_report"))
            )
        else:
            pathology = current(pathology.lazy(), schemas.contract("pathology_report")).collect()
        try:
            return build_report(
                self.tables["tract_outcomes"],
                self.tables["patient_outcomes"],
                self.tables["conflicts"],
                pathology,
                level=level,
                meta={"study": self.study, **self.meta},
            )
        except pl.exceptions.ColumnNotFoundError as exc:
            raise AdjudicatorError(
                f"snapshot {self.meta.get('lock_id', self.study)} was written by another version of "
                f"tract (its manifest's code_version) whose tables lack a column this report needs "
                f"({str(exc).splitlines()[0].split(';')[0]}); read its frozen report.json, or report with that version"
            ) from None


def current_snapshot(
    platform: Platform, study: str, upto: dict[str, int] | None = None
) -> Snapshot:
    """The study as the log holds it now (or at the cut ``upto``)."""
    from services.adjudicator.audit import audit_trail

    snapshot = outcome_snapshot(platform, study, platform.adjudicate(study, upto), upto)
    events = {kind: platform.records(kind, study, upto).collect() for kind in EVENT_KINDS}
    tables = snapshot.tables | {"audit": audit_trail(platform, study, upto)}
    return Snapshot(study, tables, events, snapshot.meta)


def outcome_snapshot(
    platform: Platform, study: str, result: Adjudication, upto: dict[str, int] | None = None
) -> Snapshot:
    """The outcome tables of ``result`` and the pathology reports: all a report needs (no
    audit trail, no other events), for reporting on the current state."""
    tables = {
        "tract_outcomes": result.tracts,
        "patient_outcomes": result.patients,
        "conflicts": result.conflicts,
    }
    events = {"pathology_report": platform.records("pathology_report", study, upto).collect()}
    meta = {
        "source": "current" if upto is None else "cut",
        "rule_set": result.rule_set,
        "rule_set_version": result.rule_set_version,
    }
    return Snapshot(study, tables, events, meta)


def to_parquet(frame: pl.DataFrame, kind: str | None = None) -> bytes:
    """Parquet bytes; event frames are cast to the Arrow schema of their contract."""
    table = frame.to_arrow()
    if kind is not None:
        payload = schemas.arrow_schema(schemas.contract(kind))
        envelope = [
            pa.field("offset", pa.int64(), False),
            pa.field("event_id", pa.large_string(), False),
        ]
        target = pa.schema(
            envelope + [payload.field(name) for name in payload.names], metadata=payload.metadata
        )
        table = table.select(target.names).cast(target)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def snapshot_files(snapshot: Snapshot, report: dict[str, Any]) -> dict[str, bytes]:
    files = {f"{name}.parquet": to_parquet(frame) for name, frame in snapshot.tables.items()}
    files |= {
        f"events/{kind}.parquet": to_parquet(frame, kind) for kind, frame in snapshot.events.items()
    }
    files["report.json"] = json.dumps(report, indent=2, sort_keys=True).encode()
    return files


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entries(files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """A manifest's ``files``: the sha256 and size of each file, by name."""
    return {name: {"sha256": sha256(data), "bytes": len(data)} for name, data in files.items()}


def lock_prefix(study: str, lock_id: str) -> str:
    return f"locks/{study}/{lock_id}"


def read_manifest(store: ObjectStore, study: str, lock_id: str) -> dict[str, Any]:
    try:
        return json.loads(store.read(f"{lock_prefix(study, lock_id)}/{MANIFEST}"))
    except ObjectNotFoundError:
        raise LockNotFoundError(
            f"no lock {lock_id} for study {study} at {store.location(lock_prefix(study, lock_id))}; "
            "list locks with `tract snapshot list`"
        ) from None


def open_lock(store: ObjectStore, study: str, lock_id: str) -> Snapshot:
    """A locked snapshot, after checking every file against the manifest's sha256."""
    manifest = read_manifest(store, study, lock_id)
    tables, events, files = verified_frames(store, lock_prefix(study, lock_id), manifest)
    meta = {
        "source": "lock",
        "lock_id": lock_id,
        "locked_at": manifest["locked_at"],
        "rule_set": manifest["rule_set"]["id"],
        "rule_set_version": manifest["rule_set"]["version"],
    }
    return Snapshot(study, tables, events, meta, files)


def verified_frames(
    store: ObjectStore, prefix: str, manifest: dict[str, Any]
) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame], dict[str, bytes]]:
    """The files under ``prefix``: Parquet as frames (tables, events), the others as bytes, each
    read only after its bytes match the manifest's sha256; a missing or altered file refuses
    the whole snapshot."""
    tables: dict[str, pl.DataFrame] = {}
    events: dict[str, pl.DataFrame] = {}
    others: dict[str, bytes] = {}
    for name, expected in manifest["files"].items():
        key = f"{prefix}/{name}"
        try:
            data = store.read(key)
        except ObjectNotFoundError:
            raise SnapshotTamperedError(
                f"{store.location(key)} is listed in the manifest but missing; the snapshot was "
                "altered: do not use it, restore the file from the store's retained version"
            ) from None
        if sha256(data) != expected["sha256"]:
            raise SnapshotTamperedError(
                f"{store.location(key)}: sha256 {sha256(data)[:16]}… does not match the manifest's "
                f"{expected['sha256'][:16]}…; the locked snapshot was altered: do not use it, "
                "restore it from the store's retained version"
            )
        if not name.endswith(".parquet"):
            others[name] = data
            continue
        frame = pl.read_parquet(io.BytesIO(data))
        if name.startswith("events/"):
            events[name.removeprefix("events/").removesuffix(".parquet")] = frame
        else:
            tables[name.removesuffix(".parquet")] = frame
    return tables, events, others
