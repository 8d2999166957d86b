"""Record identity: duplicates, conflicting duplicates, corrections and late versions.

A record is its id and version. The same id and version with the same content is a
duplicate (a no-op); with other content it is rejected. Any other version is accepted:
whether it becomes current is the adjudicator's fold (the highest version wins).
"""

from __future__ import annotations

import polars as pl

from schemas import Contract
from services.ingest.read import LINE

KNOWN_SCHEMA = pl.Schema(
    {"record_id": pl.String(), "version": pl.Int64(), "content_hash": pl.String()}
)


def classify(rows: pl.DataFrame, known: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """Add ``outcome`` (accepted | duplicate | rejected) and ``reason`` to validated rows.

    ``rows`` carries ``content_hash``; ``known`` is what the log already holds for the study
    and kind (record_id, version, content_hash).
    """
    id_col, version_col = contract.id_field, contract.version_field
    keyed = rows.with_columns(
        pl.col(id_col).alias("_id"), pl.col(version_col).alias("_version")
    ).with_columns(
        _first_hash=pl.col("content_hash").first().over("_id", "_version"),
        _first_line=pl.col(LINE).first().over("_id", "_version"),
        _repeat=pl.int_range(pl.len()).over("_id", "_version") > 0,
    )
    joined = keyed.join(
        known.rename({"record_id": "_id", "version": "_version", "content_hash": "_known_hash"}),
        on=["_id", "_version"],
        how="left",
    )
    conflicting_known = pl.col("_known_hash").is_not_null() & (
        pl.col("_known_hash") != pl.col("content_hash")
    )
    conflicting_repeat = pl.col("_repeat") & (pl.col("_first_hash") != pl.col("content_hash"))
    label = (
        pl.lit(f"{id_col} ")
        + pl.col("_id")
        + pl.lit(f" {version_col} ")
        + pl.col("_version").cast(pl.String)
    )
    return joined.with_columns(
        outcome=pl.when(conflicting_known | conflicting_repeat)
        .then(pl.lit("rejected"))
        .when(pl.col("_known_hash").is_not_null() | pl.col("_repeat"))
        .then(pl.lit("duplicate"))
        .otherwise(pl.lit("accepted")),
        reason=pl.when(conflicting_known)
        .then(
            pl.lit("conflicting duplicate: ")
            + label
            + pl.lit(
                " was already received with different content; send a new version with a change_reason"
            )
        )
        .when(conflicting_repeat)
        .then(
            pl.lit("conflicting duplicate: ")
            + label
            + pl.lit(" appears on line ")
            + pl.col("_first_line").cast(pl.String)
            + pl.lit(" with different content; send a new version with a change_reason")
        ),
    ).drop("_id", "_version", "_first_hash", "_first_line", "_repeat", "_known_hash")


def known_from_records(records: pl.LazyFrame, contract: Contract) -> pl.DataFrame:
    """The identity index (record_id, version, content_hash) from typed records."""
    return (
        records.select(
            record_id=pl.col(contract.id_field),
            version=pl.col(contract.version_field),
            content_hash=pl.col("content_hash"),
        )
        .unique(["record_id", "version"], keep="first")
        .collect()
        .cast(dict(KNOWN_SCHEMA))
    )
