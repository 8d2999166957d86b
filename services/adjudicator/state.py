"""From event frames to the current records the rules read.

A record's current version is its highest version; a late lower version never becomes
current, and a current version with ``deleted = Y`` retires the record. Every row keeps its
``event_id`` and ``offset`` so decisions can name their inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import polars as pl

import schemas
from schemas import Contract

EVIDENCE_KINDS = ("subject", "tract", "injection", "clinical_exam", "mri_read", "pathology_report")


def decode(frame: pl.DataFrame | pl.LazyFrame, contract: Contract) -> pl.LazyFrame:
    """Typed payload columns (per the contract) plus the envelope's event_id and offset."""
    typed = schemas.polars_schema(contract)
    as_json = {
        name: pl.String() if dtype in (pl.Date(), pl.Datetime("us", "UTC")) else dtype
        for name, dtype in typed.items()
    }
    return (
        frame.lazy()
        .select(
            "offset", "event_id", pl.col("payload").str.json_decode(pl.Struct(as_json)).alias("_p")
        )
        .unnest("_p")
        .with_columns(
            [
                pl.col(name).str.to_date("%Y-%m-%d")
                if dtype == pl.Date()
                else pl.col(name).str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_zone="UTC")
                for name, dtype in typed.items()
                if dtype in (pl.Date(), pl.Datetime("us", "UTC"))
            ]
        )
    )


def current(records: pl.LazyFrame, contract: Contract) -> pl.LazyFrame:
    """The current version of every record, without retired ones.

    Ingest lets one content through per id and version, so a record never corrected has one
    row and is current as it is; only the (few) corrected records need ordering by version,
    then log position.
    """
    id_, version = contract.id_field, contract.version_field
    corrected = records.filter(pl.col(version) > 1).select(id_).unique()
    key = pl.col(version) * (1 << 40) + pl.col("offset")
    latest = records.join(corrected, on=id_, how="semi").filter(key == key.max().over(id_))
    untouched = records.join(corrected, on=id_, how="anti")
    return pl.concat([untouched, latest]).filter(~pl.col("deleted").fill_null(False))


@dataclass(frozen=True)
class Evidence:
    """The current evidence of one study, one frame per kind."""

    subjects: pl.LazyFrame
    tracts: pl.LazyFrame
    injections: pl.LazyFrame
    exams: pl.LazyFrame
    reads: pl.LazyFrame
    pathology: pl.LazyFrame

    @classmethod
    def from_records(cls, records: dict[str, pl.LazyFrame]) -> Evidence:
        """From every accepted version of every record (decoded), by kind."""
        names = dict(zip((f.name for f in fields(cls)), EVIDENCE_KINDS, strict=True))
        return cls(
            **{attr: current(records[kind], schemas.contract(kind)) for attr, kind in names.items()}
        )

    def collect(self, columns: Mapping[str, Sequence[str]] | None = None) -> Evidence:
        """Every frame computed once; ``columns`` (by field name) loads only those columns."""
        frames = pl.collect_all(
            [
                getattr(self, f.name).select(*columns[f.name]) if columns else getattr(self, f.name)
                for f in fields(self)
            ]
        )
        return Evidence(*(frame.lazy() for frame in frames))


def empty_records(kind: str) -> pl.LazyFrame:
    schema = {"offset": pl.Int64(), "event_id": pl.String()} | dict(
        schemas.polars_schema(schemas.contract(kind))
    )
    return pl.LazyFrame(schema=schema)
