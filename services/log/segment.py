"""A segment: one batch of one kind's events for one study, as typed columns (Parquet).

Why columnar: a transfer file of a million rows is one segment, written and read back by
Polars without turning any row into a Python object or JSON text. The columns of a kind come
from its contract in ``schemas/``; every segment also carries the envelope (``offset``,
``event_id``, ``study``, ``subject_id``) and, for the kinds sites send, where each row came
from (``source_file``, ``source_line``, ``ingest_run``) and its ``content_hash``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl

import schemas
from services.events import Event

ENVELOPE = pl.Schema(
    {
        "offset": pl.Int64(),
        "event_id": pl.String(),
        "study": pl.String(),
        "subject_id": pl.String(),
    }
)
PROVENANCE = pl.Schema(
    {
        "source_file": pl.String(),
        "source_line": pl.Int64(),
        "ingest_run": pl.String(),
        "content_hash": pl.String(),
    }
)
"""Where a site's row came from and the digest of its content (record kinds only)."""

DATE, STAMP = pl.Date(), pl.Datetime("us", "UTC")
ROW_GROUP = 65_536
"""Rows per Parquet row group: small enough that reading one subject skips most of a segment."""


@dataclass(frozen=True)
class Batch:
    """Events of one kind for one study, as a frame: the unit a log appends as one segment.

    ``frame`` holds the kind's contract columns plus ``event_id`` and ``subject_id`` (and the
    provenance columns for record kinds); offsets are assigned by the log.
    """

    kind: str
    study: str
    frame: pl.DataFrame
    new: bool = False
    """The producer vouches that none of its event ids is in the log yet (ingest's identity
    check, under the writer lock), so the log skips reading the kind's ids to drop repeats."""
    unique: bool = False
    """The producer vouches that no event id repeats within the batch (ingest: one accepted
    row per record id and version), so the log skips looking for repeats."""

    def __len__(self) -> int:
        return self.frame.height


def has_provenance(kind: str) -> bool:
    return schemas.contract(kind).source is not None


@cache
def segment_schema(kind: str) -> pl.Schema:
    """The columns of a segment of ``kind``, in order."""
    columns = dict(ENVELOPE) | dict(schemas.polars_schema(schemas.contract(kind)))
    if has_provenance(kind):
        columns |= dict(PROVENANCE)
    return pl.Schema(columns)


def conform(batch: Batch, first_offset: int) -> pl.DataFrame:
    """The batch as a segment: its columns in the kind's order, offsets from ``first_offset``,
    rows of a subject together (so a reader of one subject skips the rest), log order kept
    within a subject."""
    schema = segment_schema(batch.kind)
    frame = batch.frame.with_columns(study=pl.lit(batch.study))
    missing = [pl.lit(None, dtype).alias(n) for n, dtype in schema.items() if n not in frame]
    frame = frame.with_columns(missing)
    if not frame["subject_id"].is_sorted():  # a file sorted by subject is not copied again
        frame = frame.sort("subject_id", maintain_order=True)
    return frame.with_columns(
        offset=pl.int_range(first_offset, first_offset + frame.height, dtype=pl.Int64)
    ).select([pl.col(n).cast(dtype) for n, dtype in schema.items()])


COMPRESSION, LEVEL = "zstd", 1
"""Half LZ4's size for about its time (the event ids and digests are hex, which LZ4 cannot
shrink): every byte written is also copied to the page cache, flushed and hashed."""


def write_segment(segment: pl.DataFrame, path: Path) -> None:
    """The segment's file (written straight from the frame: no copy of it in memory)."""
    segment.write_parquet(
        path,
        compression=COMPRESSION,
        compression_level=LEVEL,
        row_group_size=ROW_GROUP,
        statistics=True,
    )


# Events (one Python object each: decisions, votes, locks, access records) <-> frames ---------
def batch_of_events(kind: str, study: str, events: Sequence[Event]) -> Batch:
    """A batch from events of one kind and study; payload dates and timestamps are ISO text,
    as events carry them."""
    schema = segment_schema(kind)
    payload_names = [n for n in schema if n not in ENVELOPE or n in schemas.contract(kind).columns]
    as_text = {n: pl.String() if schema[n] in (DATE, STAMP) else schema[n] for n in payload_names}
    rows = [{n: e.payload.get(n) for n in payload_names} for e in events]
    frame = pl.DataFrame(rows, schema=as_text, orient="row").with_columns(
        parse_iso(schema, names=payload_names)
    )
    frame = frame.with_columns(event_id=pl.Series([e.event_id for e in events], dtype=pl.String))
    if "subject_id" not in schemas.contract(kind).columns:  # else the payload's own field
        frame = frame.with_columns(
            subject_id=pl.Series([e.subject_id for e in events], dtype=pl.String)
        )
    return Batch(kind, study, frame)


def parse_iso(schema: pl.Schema, names: Sequence[str] | None = None) -> list[pl.Expr]:
    """Expressions turning ISO text columns back into dates and UTC timestamps."""
    chosen = schema.names() if names is None else names
    return [
        pl.col(n).str.to_date("%Y-%m-%d")
        if schema[n] == DATE
        else pl.col(n).str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_zone="UTC")
        for n in chosen
        if schema[n] in (DATE, STAMP)
    ]


def iso_text(schema: pl.Schema) -> list[pl.Expr]:
    """Dates and timestamps as the ISO text events carry (to the second, in UTC)."""
    return [
        pl.col(n).dt.to_string("%Y-%m-%d")
        if dtype == DATE
        else pl.col(n).dt.to_string("%Y-%m-%dT%H:%M:%SZ")
        for n, dtype in schema.items()
        if dtype in (DATE, STAMP)
    ]


def events_of(batch: Batch) -> list[Event]:
    """Per-event objects of a batch (for Kafka, which keeps one record per event)."""
    schema = segment_schema(batch.kind)
    contract = schemas.contract(batch.kind)
    payload_names = [*contract.columns, *(PROVENANCE if has_provenance(batch.kind) else ())]
    names = [n for n in payload_names if n in batch.frame.columns]
    envelope = ["event_id", *([] if "subject_id" in names else ["subject_id"])]
    rows = batch.frame.select(*envelope, *names).with_columns(
        iso_text(pl.Schema({n: schema[n] for n in names}))
    )
    out = []
    for row in rows.iter_rows(named=True):
        payload: dict[str, Any] = {n: row[n] for n in names}
        out.append(
            Event(
                batch.kind,
                batch.study,
                row["subject_id"],
                row["event_id"],
                payload,
                contract.version,
            )
        )
    return out
