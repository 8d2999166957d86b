"""One ingest run of one file, as frames: validate, classify identities, build the batches.

Nothing here goes row by row: content digests and event ids are Polars expressions
(sha256 from polars-hash), so a file of a million rows costs what its columns cost. The run
returns its report and the batches to append (accepted rows, dead letters, the run's
accounting); the caller appends them in one commit, so all of it lands or none of it, and
the ids, derived from content, make a re-run after a crash append nothing twice.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl
import polars_hash as plh

import schemas
from schemas import Contract
from services.events import event_id_expr, make_event, utc_now
from services.ingest.errors import UnknownKindError
from services.ingest.identity import classify
from services.ingest.read import LINE, read_rows
from services.ingest.report import IngestReport, Rejection
from services.ingest.validate import validate
from services.log.segment import Batch, batch_of_events

KnownRecords = Callable[[str, str, pl.Series], pl.DataFrame]
"""(kind, study, record ids, repeats allowed) -> the record_id, version and content_hash the
log already holds for those ids."""

DIGEST_HEX = 32
"""Content digests keep 128 bits of BLAKE3; event ids keep 96 of sha256 (as
``services.events.digest``)."""


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


def _stable_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """A column as text whose spelling does not depend on the Polars version: floats by their
    bits, timestamps as microseconds, dates as ISO days."""
    col = pl.col(name)
    if dtype == pl.Float64():
        return col.reinterpret(signed=False).cast(pl.String)
    if dtype == pl.List(pl.Float64()):
        return col.list.eval(pl.element().reinterpret(signed=False).cast(pl.String)).list.join(",")
    if dtype == pl.Datetime("us", "UTC"):
        return col.dt.epoch("us").cast(pl.String)
    return col.cast(pl.String)


def content_hash(contract: Contract) -> pl.Expr:
    """The digest of a typed row's content (every contract field, in order): the same record
    sent twice gives the same digest, and any difference gives another. Fields are joined by
    U+001F, a null is U+0000: validation refuses both characters in every text field, so the
    joined text cannot be read two ways. BLAKE3 (polars-hash), 128 bits kept."""
    schema = schemas.polars_schema(contract)
    text = plh.concat_str(
        [_stable_text(n, dtype).fill_null("\x00") for n, dtype in schema.items()],
        separator="\x1f",
    )
    return text.chash.blake3().str.slice(0, DIGEST_HEX)


def new_run_id() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class FileRun:
    """What one file's run produced: the report people read and the batches to append."""

    report: IngestReport
    batches: tuple[Batch, ...]
    kind: str


@dataclass(frozen=True)
class ParsedFile:
    """A file read and validated: the part of a run that needs no log, done in a background
    thread while the file before it is digested (:func:`digest_rows`), checked and appended."""

    path: Path
    contract: Contract
    raw: pl.DataFrame
    typed: pl.DataFrame
    """The valid rows, typed (with ``content_hash`` once :func:`digest_rows` has run)."""
    invalid: pl.DataFrame
    file_sha256: str
    started: str


def parse_file(path: Path, kind: str | None = None) -> ParsedFile:
    """Read and validate ``path`` (in columns); raise only to refuse the whole file."""
    started = utc_now()
    contract = kind_of(path, kind)
    data = path.read_bytes()  # once: what is hashed is what was read
    with ThreadPoolExecutor(max_workers=1) as background:  # hashlib lets go of the GIL
        file_sha256 = background.submit(lambda: hashlib.sha256(data).hexdigest())
        raw = read_rows(path, contract, data)
    typed, invalid = validate(raw, contract)
    return ParsedFile(path, contract, raw, typed, invalid, file_sha256.result(), started)


def digest_rows(parsed: ParsedFile) -> ParsedFile:
    """``parsed`` with each valid row's ``content_hash``, which :func:`ingest_parsed` checks
    identities by: computed before the writer lock is taken, on the thread that applies (at
    100,000 subjects the background reading is the longer path)."""
    typed = parsed.typed.with_columns(content_hash=content_hash(parsed.contract))
    return replace(parsed, typed=typed)


def ingest_parsed(
    parsed: ParsedFile, study: str, known_records: KnownRecords, run_id: str | None = None
) -> FileRun:
    """Classify a parsed file's identities against the log and build what to append (call
    under the log's writer lock, and append before letting go of it). ``parsed`` comes from
    :func:`digest_rows`: identities are checked by its ``content_hash``."""
    path, contract, raw, typed = parsed.path, parsed.contract, parsed.raw, parsed.typed
    run_id = run_id or new_run_id()
    known = known_records(contract.kind, study, typed[contract.id_field])
    classified = classify(typed, known, contract)

    outcomes = classified["outcome"].value_counts().rows()
    counts = dict.fromkeys(("accepted", "duplicate", "rejected"), 0) | dict(outcomes)
    accepted = classified.lazy()
    if counts["accepted"] < classified.height:  # lazily: only the columns kept are filtered
        accepted = accepted.filter(pl.col("outcome") == "accepted")
    accepted_frame = accepted.select(
        *contract.columns,
        event_id=event_id_expr(
            study,
            contract.kind,
            pl.col(contract.id_field),
            pl.col(contract.version_field),
            pl.col("content_hash"),
        ),
        source_file=pl.lit(path.name),
        source_line=pl.col(LINE),
        ingest_run=pl.lit(run_id),
        content_hash=pl.col("content_hash"),
    ).collect()
    conflicting = classified.filter(pl.col("outcome") == "rejected").select(
        LINE, pl.lit(contract.version_field).alias("field"), "reason"
    )
    rejected = pl.concat([parsed.invalid, conflicting]).sort(LINE)
    dead = _dead_letters(raw, rejected, contract, path.name, run_id, study)
    rejections = tuple(
        Rejection(path.name, line, field, reason) for line, field, reason in rejected.iter_rows()
    )
    report = IngestReport(
        file=path.name,
        kind=contract.kind,
        ingest_run=run_id,
        read=raw.height,
        accepted=accepted_frame.height,
        duplicates=counts["duplicate"],
        rejected=rejections,
    )
    run = make_event(
        "ingest_run",
        study,
        "",
        {
            "ingest_run": run_id,
            "source_kind": contract.kind,
            "file": str(path),
            "file_sha256": parsed.file_sha256,
            "read": report.read,
            "accepted": report.accepted,
            "duplicates": report.duplicates,
            "rejected": len(rejections),
            "started_at": parsed.started,
            "finished_at": utc_now(),
        },
        run_id,
    )
    batches = (
        # identity was checked against the log under its writer lock: these ids are new, and
        # one row per record id and version is accepted: none repeats
        Batch(contract.kind, study, accepted_frame, new=True, unique=True),
        Batch("rejected_row", study, dead),
        Batch("ingest_run", study, batch_of_events("ingest_run", study, [run]).frame, new=True),
    )
    return FileRun(report, batches, contract.kind)


def _dead_letters(
    raw: pl.DataFrame,
    rejected: pl.DataFrame,
    contract: Contract,
    file: str,
    run_id: str,
    study: str,
) -> pl.DataFrame:
    """One dead letter per rejected line: the source row as the site sent it (its text values
    as JSON), with the first reason."""
    original = raw.join(rejected, on=LINE, how="inner").sort(LINE)
    text = pl.struct([pl.col(c) for c in contract.columns]).struct.json_encode()
    return original.select(
        source_kind=pl.lit(contract.kind),
        file=pl.lit(file),
        line=pl.col(LINE),
        field=pl.col("field"),
        reason=pl.col("reason"),
        raw=text,
        ingest_run=pl.lit(run_id),
    ).with_columns(
        event_id=event_id_expr(study, "rejected_row", pl.lit(file), pl.col("line"), pl.col("raw")),
        subject_id=pl.col("raw").str.json_path_match("$.subject_id").fill_null(""),
    )
