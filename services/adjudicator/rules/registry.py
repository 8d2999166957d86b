"""Rule ``registry.identity``: one current subject record per subject, one registry record per
subject and tract, and evidence only for subjects with a subject record.

A second current record under a new record id (a re-registration) is a DUPLICATE_REGISTRATION
conflict; until the site retires one, the record received first (lowest log position of its
current version) counts, so the subject or tract counts once. Evidence of a subject without a
subject record is an UNKNOWN_SUBJECT conflict, never silently dropped. Both are site queries:
they resolve when the data are corrected. Subject-level conflicts carry tract_id "" (the
convention for a patient-level key).
"""

from __future__ import annotations

import polars as pl

from services.adjudicator.rules import TRACT_KEY

DUPLICATE_REGISTRATION = "DUPLICATE_REGISTRATION"
UNKNOWN_SUBJECT = "UNKNOWN_SUBJECT"
SUBJECT_KEY = ("subject_id",)


def first_received(
    records: pl.LazyFrame, key: tuple[str, ...]
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """(one record per ``key``: the first received; every record of a key held more than once).
    Almost every key has one record: only the others are sorted."""
    repeated = pl.struct(key).is_duplicated()
    several = records.filter(repeated)
    counted = pl.concat(
        [
            records.filter(~repeated),
            several.sort("offset").unique(key, keep="first", maintain_order=True),
        ]
    )
    return counted, several


def _records(field: str, label: str) -> pl.Expr:
    """'SUBJ-1 (COMPLETED), SUBJ-9 (ENROLLED)': each record with the field the rules read."""
    text = pl.col("record_id") + pl.lit(f" ({label}") + pl.col(field).cast(pl.String) + pl.lit(")")
    return text.sort_by("offset").str.join(", ")


def duplicate_registrations(
    subjects: pl.LazyFrame, tracts: pl.LazyFrame, counted_subjects: pl.LazyFrame
) -> pl.LazyFrame:
    """DUPLICATE_REGISTRATION conflicts from the records of keys held more than once
    (``first_received``'s second frame). Withdrawn subjects raise none: a subject whose records
    all say WITHDRAWN, or a tract of a subject counted as withdrawn."""
    first = pl.col("record_id").sort_by("offset").first()
    subject_rows = (
        subjects.group_by("subject_id")
        .agg(
            _withdrawn=(pl.col("status") == "WITHDRAWN").all(),
            _n=pl.len(),
            _records=_records("status", ""),
            _first=first,
            event_ids=pl.col("event_id").sort(),
        )
        .filter(~pl.col("_withdrawn"))
        .select(
            type=pl.lit(DUPLICATE_REGISTRATION),
            subject_id="subject_id",
            tract_id=pl.lit(""),
            about=pl.lit("subject"),
            detail=pl.format(
                "{} current subject records for {}: {}; the first received, {}, counts until "
                "the site retires the other",
                "_n",
                "subject_id",
                "_records",
                "_first",
            ),
            event_ids="event_ids",
        )
    )
    withdrawn = counted_subjects.filter(pl.col("status") == "WITHDRAWN").select("subject_id")
    tract_rows = (
        tracts.join(withdrawn, on="subject_id", how="anti")
        .with_columns(treated=pl.when(pl.col("treated")).then(pl.lit("Y")).otherwise(pl.lit("N")))
        .group_by(TRACT_KEY)
        .agg(
            _n=pl.len(),
            _records=_records("treated", "treated "),
            _first=first,
            event_ids=pl.col("event_id").sort(),
        )
        .select(
            type=pl.lit(DUPLICATE_REGISTRATION),
            subject_id="subject_id",
            tract_id="tract_id",
            about=pl.lit("registry"),
            detail=pl.format(
                "{} registry records for {}/{}: {}; the first received, {}, counts until the "
                "site retires the other",
                "_n",
                "subject_id",
                "tract_id",
                "_records",
                "_first",
            ),
            event_ids="event_ids",
        )
    )
    return pl.concat([subject_rows, tract_rows])


def unknown_subjects(evidence: dict[str, pl.LazyFrame], unknown: pl.LazyFrame) -> pl.LazyFrame:
    """UNKNOWN_SUBJECT conflicts: per subject id in ``unknown`` (ids with no current subject
    record), the evidence that names it (``evidence``: label -> frame with subject_id and
    event_id), counted by kind."""
    seen = pl.concat(
        [
            frame.select("subject_id", "event_id", _kind=pl.lit(label))
            for label, frame in evidence.items()
        ]
    ).join(unknown.select("subject_id"), on="subject_id", how="semi")
    n = pl.col("_n")
    counts = (
        seen.group_by("subject_id", "_kind")
        .agg(_n=pl.len())
        .group_by("subject_id")
        .agg(
            _counts=(
                n.cast(pl.String)
                + pl.lit(" ")
                + pl.col("_kind")
                + pl.when(n > 1).then(pl.lit("s")).otherwise(pl.lit(""))
            )
            .sort()
            .str.join(", ")
        )
    )
    return (
        seen.group_by("subject_id")
        .agg(event_ids=pl.col("event_id").unique().sort())
        .join(counts, on="subject_id")
        .select(
            type=pl.lit(UNKNOWN_SUBJECT),
            subject_id="subject_id",
            tract_id=pl.lit(""),
            about=pl.lit("subject"),
            detail=pl.lit("no subject record for ")
            + pl.col("subject_id")
            + pl.lit(", named by ")
            + pl.col("_counts")
            + pl.lit("; send its subject record or correct the subject id"),
            event_ids="event_ids",
        )
    )
