"""One ingest run: read a file, validate, classify identities, publish events, account for rows.

Accepted rows, dead letters and the run's accounting go out in one publish, so the embedded
log applies all of it or none of it; event ids come from content, so a re-run after a crash
appends nothing twice.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path

import polars as pl

import schemas
from schemas import Contract
from services.bus import EventBus
from services.events import Event, canonical_json, digest, make_event, utc_now
from services.ingest.errors import UnknownKindError
from services.ingest.identity import KNOWN_SCHEMA, classify
from services.ingest.read import LINE, read_rows
from services.ingest.report import IngestReport, Rejection
from services.ingest.validate import validate

KnownRecords = Callable[[str, str], pl.DataFrame]
"""(kind, study) -> the record_id, version and content_hash the log already holds."""


def kind_of(path: Path, kind: str | None = None) -> Contract:
    """The contract of a transfer file, from ``kind`` or from its file name."""
    if kind:
        try:
            found = schemas.contract(kind)
        except KeyError:
            found = None
        if found is None or found.source is None:
            names = ", ".join(c.kind for c in schemas.source_contracts().values())
            raise UnknownKindError(path.name, f"unknown kind {kind!r}", f"use one of {names}")
        return found
    by_file = schemas.source_contracts()
    if path.name in by_file:
        return by_file[path.name]
    raise UnknownKindError(
        path.name,
        "cannot tell the kind from the file name",
        f"name it one of {', '.join(by_file)} or pass --kind",
    )


def ingest_file(
    path: Path,
    study: str,
    bus: EventBus,
    known_records: KnownRecords,
    kind: str | None = None,
) -> IngestReport:
    """Validate ``path`` row by row and publish what it holds; raise only to refuse the file."""
    started = utc_now()
    contract = kind_of(path, kind)
    data = path.read_bytes()  # once: what is hashed is what was read
    raw = read_rows(path, contract, data)
    run_id = f"run-{uuid.uuid4().hex[:12]}"
    typed, invalid = validate(raw, contract)
    payloads = _payloads(typed, contract)
    typed = typed.with_columns(
        content_hash=pl.Series([digest(canonical_json(p)) for p in payloads], dtype=pl.String)
    )
    known = known_records(contract.kind, study)
    # The row index is taken before classify's join: it points into ``payloads``.
    classified = classify(typed.with_row_index("_row"), known, contract)

    meta = {"source_file": path.name, "ingest_run": run_id}
    events: list[Event] = []
    accepted = classified.filter(pl.col("outcome") == "accepted")
    for row, line, content_hash in accepted.select("_row", LINE, "content_hash").iter_rows():
        payload = payloads[row]
        events.append(
            make_event(
                contract.kind,
                study,
                payload["subject_id"],
                {**payload, **meta, "source_line": line, "content_hash": content_hash},
                payload[contract.id_field],
                payload[contract.version_field],
                content_hash,
            )
        )

    conflicting = classified.filter(pl.col("outcome") == "rejected").select(
        LINE, pl.lit(contract.version_field).alias("field"), "reason"
    )
    rejected = pl.concat([invalid, conflicting]).sort(LINE)
    rejections = tuple(
        Rejection(path.name, line, field, reason) for line, field, reason in rejected.iter_rows()
    )
    raw_by_line = {
        r[LINE]: r for r in raw.filter(pl.col(LINE).is_in(rejected[LINE].to_list())).to_dicts()
    }
    for rejection in rejections:
        original = {k: v for k, v in raw_by_line[rejection.line].items() if not k.startswith("_")}
        events.append(
            make_event(
                "rejected_row",
                study,
                original.get("subject_id") or "",
                {
                    "source_kind": contract.kind,
                    "file": path.name,
                    "line": rejection.line,
                    "field": rejection.field,
                    "reason": rejection.reason,
                    "raw": canonical_json(original),
                    "ingest_run": run_id,
                },
                path.name,
                rejection.line,
                canonical_json(original),
            )
        )

    report = IngestReport(
        file=path.name,
        kind=contract.kind,
        ingest_run=run_id,
        read=raw.height,
        accepted=accepted.height,
        duplicates=classified.filter(pl.col("outcome") == "duplicate").height,
        rejected=rejections,
    )
    events.append(
        make_event(
            "ingest_run",
            study,
            "",
            {
                "ingest_run": run_id,
                "source_kind": contract.kind,
                "file": str(path),
                "file_sha256": hashlib.sha256(data).hexdigest(),
                "read": report.read,
                "accepted": report.accepted,
                "duplicates": report.duplicates,
                "rejected": len(rejections),
                "started_at": started,
                "finished_at": utc_now(),
            },
            run_id,
        )
    )
    bus.publish(events)
    return report


def _payloads(typed: pl.DataFrame, contract: Contract) -> list[dict]:
    """Rows as JSON-ready dicts (dates and timestamps as ISO text), without ``_line``."""
    text = typed.select(
        [
            pl.col(name).dt.to_string("%Y-%m-%dT%H:%M:%SZ")
            if dtype == pl.Datetime("us", "UTC")
            else pl.col(name).dt.to_string("%Y-%m-%d")
            if dtype == pl.Date()
            else pl.col(name)
            for name, dtype in schemas.polars_schema(contract).items()
        ]
    )
    return text.to_dicts()


def known_from_frame(frame: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """The identity index from a topic frame whose ``payload`` column holds event JSON."""
    if frame.is_empty():
        return pl.DataFrame(schema=KNOWN_SCHEMA)
    dtype = pl.Struct(
        {contract.id_field: pl.String, contract.version_field: pl.Int64, "content_hash": pl.String}
    )
    return (
        frame.select(pl.col("payload").str.json_decode(dtype).struct.unnest())
        .rename({contract.id_field: "record_id", contract.version_field: "version"})
        .unique(["record_id", "version"], keep="first")
    )
