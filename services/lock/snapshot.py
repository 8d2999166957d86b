"""Snapshots: the frames a lock freezes, written as Parquet with a hash-carrying manifest, and
read back only after every file's sha256 matches."""

from __future__ import annotations

import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

import schemas
from services.adjudicator.report import build_report
from services.adjudicator.ruleset import RuleSet
from services.adjudicator.state import EVIDENCE_KINDS, current
from services.lock.errors import LockError, LockNotFoundError, SnapshotTamperedError
from services.state.records import Cut, records_at
from services.store import MANIFEST, ObjectStore
from services.store.errors import ObjectNotFoundError

if TYPE_CHECKING:
    from services.adjudicator.engine import Adjudication
    from services.lock.sources import LockSources

TABLES = ("tract_outcomes", "patient_outcomes", "conflicts", "audit")
EVENT_KINDS = (
    *EVIDENCE_KINDS,
    "committee_vote",
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
    manifest: dict[str, Any] = field(default_factory=dict)
    """A stored lock's manifest (who locked, why, their signature), as verified."""

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
            raise LockError(
                f"snapshot {self.meta.get('lock_id', self.study)} was written by another version of "
                f"tract (its manifest's code_version) whose tables lack a column this report needs "
                f"({str(exc).splitlines()[0].split(';')[0]}); read its frozen report.json, or report with that version"
            ) from None


def current_snapshot(sources: LockSources, study: str, cut: Cut | None = None) -> Snapshot:
    """The study as the log holds it now (or at ``cut``): outcomes, conflicts, the audit trail
    and every accepted event."""
    from services.audit import audit_trail

    result = sources.computed(study, cut)
    scans = [records_at(sources.records, kind, study, cut) for kind in EVENT_KINDS]
    events = dict(zip(EVENT_KINDS, pl.collect_all(scans), strict=True))  # side by side
    snapshot = outcome_snapshot(result, events["pathology_report"], cut)
    audit = audit_trail(sources.records, study, cut).with_columns(
        pl.col("at").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC", strict=False)
    )
    tables = snapshot.tables | {"audit": audit}
    return Snapshot(study, tables, events, snapshot.meta)


def outcome_snapshot(
    result: Adjudication, pathology: pl.DataFrame, cut: Cut | None = None
) -> Snapshot:
    """The outcome tables of ``result`` and the pathology reports: all a report needs (no
    audit trail, no other events), for reporting on the current state."""
    tables = {
        "tract_outcomes": result.tracts,
        "patient_outcomes": result.patients,
        "conflicts": result.conflicts,
    }
    meta = {
        "source": "current" if cut is None else "cut",
        "rule_set": result.rule_set,
        "rule_set_version": result.rule_set_version,
    }
    return Snapshot(result.study, tables, {"pathology_report": pathology}, meta)


def to_parquet(
    frame: pl.DataFrame,
    kind: str | None = None,
    metadata: dict[str, dict[bytes, bytes]] | None = None,
) -> bytes:
    """Parquet bytes; event frames are cast to the Arrow schema of their contract; each column
    carries its data-dictionary entry as field metadata when ``metadata`` has one."""
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
    if metadata:
        described = [f.with_metadata(metadata.get(f.name) or f.metadata) for f in table.schema]
        table = table.cast(pa.schema(described, metadata=table.schema.metadata))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def snapshot_files(
    snapshot: Snapshot, report: dict[str, Any], rules: RuleSet | None = None
) -> dict[str, bytes]:
    """Every file of a lock or dated snapshot: the outcome tables, every accepted event
    version (``events/``), the current version of each record the checks ran on
    (``current/``), the report, and the data dictionary (JSON, Markdown, and on every Parquet
    column as field metadata)."""
    from services.dictionary import dictionary, dictionary_markdown, field_metadata

    described = dictionary(rules)

    def meta(table: str) -> dict[str, dict[bytes, bytes]] | None:
        return field_metadata(table, rules) if table in described["tables"] else None

    tables: dict[str, tuple[pl.DataFrame, str | None]] = {
        f"{name}.parquet": (frame, None) for name, frame in snapshot.tables.items()
    }
    tables |= {f"events/{kind}.parquet": (frame, kind) for kind, frame in snapshot.events.items()}
    tables |= {
        f"current/{kind}.parquet": (
            current(snapshot.events[kind].lazy(), schemas.contract(kind)).collect(),
            kind,
        )
        for kind in EVIDENCE_KINDS
        if kind in snapshot.events
    }

    def write(path: str) -> bytes:
        frame, kind = tables[path]
        return to_parquet(frame, kind, meta(path.removesuffix(".parquet")))

    with ThreadPoolExecutor(max_workers=2) as pool:  # Arrow writes Parquet without the GIL
        files = dict(zip(tables, pool.map(write, tables), strict=True))
    files["report.json"] = json.dumps(report, indent=2, sort_keys=True).encode()
    files["dictionary.json"] = json.dumps(described, indent=2).encode()
    files["DICTIONARY.md"] = dictionary_markdown(described).encode()
    return files


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entries(files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """A manifest's ``files``: the sha256 and size of each file, by name."""
    return {name: {"sha256": sha256(data), "bytes": len(data)} for name, data in files.items()}


def lock_prefix(study: str, lock_id: str) -> str:
    return f"locks/{study}/{lock_id}"


def manifest_bytes(store: ObjectStore, study: str, lock_id: str) -> bytes:
    try:
        return store.read(f"{lock_prefix(study, lock_id)}/{MANIFEST}")
    except ObjectNotFoundError:
        raise LockNotFoundError(
            f"no lock {lock_id} for study {study} at {store.location(lock_prefix(study, lock_id))}; "
            "list locks with `tract snapshot list`"
        ) from None


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """A manifest's JSON, checked for the shape every reader relies on; a damaged one is
    refused by name (never a traceback, never trusted)."""
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise SnapshotTamperedError(
            f"{where} is not valid JSON (truncated or overwritten): the snapshot is damaged; "
            "restore the manifest from the store's retained version, or run `tract verify`"
        ) from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in files.values()
    ):
        raise SnapshotTamperedError(
            f"{where} is not a tract manifest (it needs an object with a 'files' map of "
            "sha256 digests): the snapshot is damaged; restore it from the store's retained version"
        )
    return manifest


def read_manifest(
    store: ObjectStore, study: str, lock_id: str, expected_sha256: str | None = None
) -> dict[str, Any]:
    """The lock's manifest; with ``expected_sha256`` (the LOCK event's record, or a receipt
    given to an analyst) it must be that very manifest."""
    return _manifest(store, study, lock_id, expected_sha256)[1]


def verify_files(
    store: ObjectStore, study: str, lock_id: str, expected_sha256: str | None = None
) -> bytes:
    """The lock's manifest as stored (its bytes), once it and every file it lists check out
    (:func:`read_manifest`, then each file read back and hashed, none decoded): what
    verifying a lock needs."""
    data, manifest = _manifest(store, study, lock_id, expected_sha256)
    verified_frames(store, lock_prefix(study, lock_id), manifest, decode=False)
    return data


def _manifest(
    store: ObjectStore, study: str, lock_id: str, expected_sha256: str | None
) -> tuple[bytes, dict[str, Any]]:
    data = manifest_bytes(store, study, lock_id)
    where = store.location(f"{lock_prefix(study, lock_id)}/{MANIFEST}")
    if expected_sha256 is not None and sha256(data) != expected_sha256:
        raise SnapshotTamperedError(
            f"{where}: sha256 {sha256(data)[:16]}… is not the manifest the lock was published "
            f"with ({expected_sha256[:16]}… in the log's LOCK event or your receipt): the lock "
            "was rewritten; do not use it. Restore it from the store's retained version and run "
            "`tract verify`"
        )
    return data, parse_manifest(data, where)


def open_lock(
    store: ObjectStore, study: str, lock_id: str, expected_sha256: str | None = None
) -> Snapshot:
    """A locked snapshot, after checking its manifest against ``expected_sha256`` (when given)
    and every file against the manifest's sha256."""
    manifest = read_manifest(store, study, lock_id, expected_sha256)
    tables, events, files = verified_frames(store, lock_prefix(study, lock_id), manifest)
    meta = {
        "source": "lock",
        "lock_id": lock_id,
        "locked_at": manifest.get("locked_at"),
        "rule_set": (manifest.get("rule_set") or {}).get("id"),
        "rule_set_version": (manifest.get("rule_set") or {}).get("version"),
    }
    return Snapshot(study, tables, events, meta, files, manifest)


def verified_frames(
    store: ObjectStore, prefix: str, manifest: dict[str, Any], decode: bool = True
) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame], dict[str, bytes]]:
    """The files under ``prefix``: Parquet as frames (tables, events), the others as bytes, each
    read only after its bytes match the manifest's sha256; a missing or altered file refuses
    the whole snapshot. ``decode=False`` only checks (no frames are built)."""
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
        if not decode:
            continue
        frame = pl.read_parquet(io.BytesIO(data))
        if name.startswith("events/"):
            events[name.removeprefix("events/").removesuffix(".parquet")] = frame
        else:
            tables[name.removesuffix(".parquet")] = frame
    return tables, events, others


def export_copy(store: ObjectStore, prefix: str, folder: Path) -> list[str]:
    """Copy a snapshot's files and manifest byte for byte into ``folder`` (each file checked
    against the manifest on the way), so the copy can be verified on its own."""
    manifest_data = store.read(f"{prefix}/{MANIFEST}")
    manifest = parse_manifest(manifest_data, store.location(f"{prefix}/{MANIFEST}"))
    written = []
    for name, expected in manifest["files"].items():
        data = store.read(f"{prefix}/{name}")
        if sha256(data) != expected["sha256"]:
            raise SnapshotTamperedError(
                f"{store.location(f'{prefix}/{name}')} does not match its manifest; nothing copied"
            )
        target = Path(folder) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(name)
    (Path(folder) / MANIFEST).write_bytes(manifest_data)
    return written


def verify_folder(folder: Path, receipt: str | None = None) -> dict[str, Any]:
    """A copied snapshot checked on its own: the manifest against ``receipt``, every file
    against the manifest (raises :class:`SnapshotTamperedError` naming the first mismatch)."""
    path = Path(folder) / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SnapshotTamperedError(f"{path} is missing: not a copied snapshot") from None
    if receipt and sha256(data) != receipt:
        raise SnapshotTamperedError(
            f"{path}: sha256 {sha256(data)[:16]}… is not the receipt {receipt[:16]}…; the copy "
            "is not the lock that was published"
        )
    manifest = parse_manifest(data, str(path))
    for name, expected in manifest["files"].items():
        try:
            found = (Path(folder) / name).read_bytes()
        except FileNotFoundError:
            raise SnapshotTamperedError(
                f"{Path(folder) / name} is listed in the manifest but missing"
            ) from None
        if sha256(found) != expected["sha256"]:
            raise SnapshotTamperedError(
                f"{Path(folder) / name} does not match the manifest's sha256"
            )
    return {
        "folder": str(folder),
        "files": len(manifest["files"]),
        "receipt_checked": bool(receipt),
    }
