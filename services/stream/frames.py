"""Kafka's per-event records as the log's frames: the events of one kind and study become one
:class:`~services.log.segment.Batch` (one segment), decoded from their JSON text in one Polars
pass rather than one Python object per field.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

import schemas
from services.events import Event
from services.log.segment import DATE, ENVELOPE, STAMP, Batch, parse_iso, segment_schema


def batches_of(events: Sequence[Event], new: bool = False) -> list[Batch]:
    """The events grouped by kind and study (first seen first), one batch per group; ``new``:
    the caller vouches that the log holds none of them (it skips looking)."""
    groups: dict[tuple[str, str], list[Event]] = {}
    for event in events:
        groups.setdefault((event.kind, event.study), []).append(event)
    return [frame_of(kind, study, group, new) for (kind, study), group in groups.items()]


def frame_of(kind: str, study: str, events: Sequence[Event], new: bool = False) -> Batch:
    """One batch of events of ``kind`` and ``study``: their payload fields as typed columns
    (the contract's and, for the kinds sites send, the provenance), plus ``event_id`` and
    ``subject_id``."""
    schema = segment_schema(kind)
    contract = schemas.contract(kind)
    names = [n for n in schema if n not in ENVELOPE or n in contract.columns]
    as_json = {n: pl.String() if schema[n] in (DATE, STAMP) else schema[n] for n in names}
    frame = pl.DataFrame(
        {
            "event_id": [e.event_id for e in events],
            "_subject": [e.subject_id for e in events],
            "_payload": [e.value() for e in events],
        },
        schema={"event_id": pl.String, "_subject": pl.String, "_payload": pl.String},
    )
    decoded = frame.select(
        "event_id", "_subject", pl.col("_payload").str.json_decode(pl.Struct(as_json)).alias("_p")
    ).unnest("_p")
    if "subject_id" not in contract.columns:  # else the payload's own field
        decoded = decoded.rename({"_subject": "subject_id"})
    else:
        decoded = decoded.drop("_subject")
    return Batch(kind, study, decoded.with_columns(parse_iso(schema, names=names)), new)
