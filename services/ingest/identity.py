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
    """Add ``outcome`` (accepted | duplicate | rejected) and ``reason`` to validated rows, in
    their order.

    ``rows`` carries ``content_hash``; ``known`` is what the log already holds for the study
    and kind (record_id, version, content_hash). Repeats within the file and records already
    known are the rare case, so each is joined in only when there is one.
    """
    id_col, version_col = contract.id_field, contract.version_field
    key = [id_col, version_col]
    if known.height == 0 and _unique(rows[id_col]):  # every row is new
        return rows.with_columns(outcome=pl.lit("accepted"), reason=pl.lit(None, pl.String))
    frame = rows.with_columns(_repeat=~pl.struct(key).is_first_distinct())
    if frame["_repeat"].any():
        firsts = (
            frame.filter(pl.struct(key).is_duplicated())
            .group_by(key, maintain_order=True)
            .agg(_first_hash=pl.col("content_hash").first(), _first_line=pl.col(LINE).first())
        )
        frame = frame.join(firsts, on=key, how="left", maintain_order="left")
    else:
        frame = frame.with_columns(
            _first_hash=pl.lit(None, pl.String), _first_line=pl.lit(None, pl.Int64)
        )
    if known.height:
        frame = frame.join(
            known.rename(
                {"record_id": id_col, "version": version_col, "content_hash": "_known_hash"}
            ),
            on=key,
            how="left",
            maintain_order="left",
        )
    else:
        frame = frame.with_columns(_known_hash=pl.lit(None, pl.String))
    conflicting_known = pl.col("_known_hash").is_not_null() & (
        pl.col("_known_hash") != pl.col("content_hash")
    )
    conflicting_repeat = pl.col("_repeat") & (pl.col("_first_hash") != pl.col("content_hash"))
    label = (
        pl.lit(f"{id_col} ")
        + pl.col(id_col)
        + pl.lit(f" {version_col} ")
        + pl.col(version_col).cast(pl.String)
    )
    frame = frame.with_columns(
        outcome=pl.when(conflicting_known | conflicting_repeat)
        .then(pl.lit("rejected"))
        .when(pl.col("_known_hash").is_not_null() | pl.col("_repeat"))
        .then(pl.lit("duplicate"))
        .otherwise(pl.lit("accepted"))
    )
    done = ["_first_hash", "_first_line", "_repeat", "_known_hash"]
    if not (frame["outcome"] == "rejected").any():  # the common case: no reason to write
        return frame.with_columns(reason=pl.lit(None, pl.String)).drop(done)
    return frame.with_columns(
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
    ).drop(done)


def _unique(ids: pl.Series) -> bool:
    """True when no id repeats, told from the ids' 64-bit hashes (counting integers is five
    times faster than counting strings at a million rows): equal ids hash alike, so distinct
    hashes prove distinct ids; two ids sharing a hash only send the file the longer way."""
    return ids.hash().n_unique() == ids.len()


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
