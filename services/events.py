"""The event envelope every service publishes: kind, study, key, id and a JSON payload.

Event ids are derived from content, so publishing the same fact twice yields the same id
and every consumer can drop the repeat: that is what makes re-runs and crashes harmless.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import polars_hash as plh

import schemas


def canonical_json(value: Any) -> str:
    """Stable JSON text: sorted keys, no spaces, dates as ISO strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_iso)


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot put {type(value).__name__} into an event")


def digest(*parts: object, length: int = 24) -> str:
    """A short sha256 hex digest of the parts, joined by '|'."""
    text = "|".join(p if isinstance(p, str) else canonical_json(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def digest_expr(*parts: pl.Expr, length: int = 24) -> pl.Expr:
    """:func:`digest` of the parts, row by row in Polars (polars-hash's sha256: stable across
    versions): the same parts give the same id as :func:`digest` (texts and whole numbers)."""
    text = pl.concat_str([p.cast(pl.String) for p in parts], separator="|")
    return plh.concat_str(text).chash.sha2_256().str.slice(0, length)


def event_id_expr(study: str, kind: str, *parts: pl.Expr) -> pl.Expr:
    """The id :func:`make_event` gives an event of ``kind`` with these identity parts."""
    return digest_expr(pl.lit(study), pl.lit(kind), *parts)


def subject_is(subject: str) -> pl.Expr:
    """Rows whose ``subject_id`` is ``subject`` in any case, as a person types it in a filter
    (the subject list, the queries, the audit trail and its lookups all match so)."""
    return pl.col("subject_id").str.to_uppercase() == subject.upper()


def among(column: str, values: Iterable[str]) -> pl.Expr:
    """Rows whose ``column`` is one of ``values``, given as a literal set: Polars reads a few
    ids out of a Parquet scan filtered so several times faster than with ``is_in`` of an
    imploded Series (one subject of a 100,000-subject segment: 3.4 against 7 ms; three: 6.7
    against 20 ms; 5,000 alike)."""
    return pl.col(column).is_in(pl.lit(pl.Series(list(values), dtype=pl.String)).implode())


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    kind: str
    study: str
    subject_id: str
    event_id: str
    payload: dict[str, Any]
    schema_version: int = 0
    offset: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.schema_version:
            object.__setattr__(self, "schema_version", schemas.contract(self.kind).version)

    @property
    def key(self) -> str:
        """Partition key: a subject's events stay in order."""
        return f"{self.study}/{self.subject_id}"

    @property
    def topic(self) -> str:
        return self.kind

    def value(self) -> str:
        return canonical_json(self.payload)


def make_event(
    kind: str, study: str, subject_id: str, payload: dict[str, Any], *id_parts: object
) -> Event:
    """An event whose id is derived from the given identity parts (or the whole payload)."""
    parts = id_parts or (canonical_json(payload),)
    return Event(kind, study, subject_id, digest(study, kind, *parts), payload)
