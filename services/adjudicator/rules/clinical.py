"""Rules ``clinical.status`` and ``clinical.sustained`` (PROTOCOL.md: clinical status, sustained closure)."""

from __future__ import annotations

import polars as pl

from services.adjudicator.rules import TRACT_KEY
from services.adjudicator.ruleset import RuleSet

CLOSED, OPEN, NOT_DRAINING, CONTRADICTORY = "CLOSED", "OPEN", "NOT_DRAINING", "CONTRADICTORY"


def exam_status(exams: pl.LazyFrame) -> pl.LazyFrame:
    """Rule clinical.status: closed needs a closed opening and no drainage on compression."""
    opening_closed = pl.col("external_opening") == "CLOSED"
    drains = pl.col("drains_on_compression")
    return exams.with_columns(
        exam_status=pl.when(opening_closed & drains)
        .then(pl.lit(CONTRADICTORY))
        .when(opening_closed)
        .then(pl.lit(CLOSED))
        .when(drains)
        .then(pl.lit(OPEN))
        .otherwise(pl.lit(NOT_DRAINING))
    )


def visit_status(exams: pl.LazyFrame) -> pl.LazyFrame:
    """One row per tract and visit. ``status`` is null when the visit is inconsistent: a
    contradictory exam, or current records that disagree."""
    keys = [*TRACT_KEY, "visit"]
    status, grade = pl.col("exam_status"), pl.col("discharge_grade")
    contradictory = "external opening CLOSED with drainage on compression"
    # Almost every visit has one record: only the others need grouping (a much smaller job).
    # Rows whose key hash is unique are certainly alone; a hash collision only sends a few
    # more rows to the exact grouping below.
    checked = exam_status(exams).with_columns(_alone=pl.len().over(pl.struct(keys).hash()) == 1)
    single = (
        checked.filter("_alone")
        .select(
            *keys,
            records=pl.lit(1, pl.UInt32),
            exam_date="exam_date",
            discharge_grade=grade,
            event_ids=pl.concat_list("event_id"),
            inconsistent=status == CONTRADICTORY,
            status=pl.when(status != CONTRADICTORY).then(status),
        )
        .with_columns(inconsistency=pl.when("inconsistent").then(pl.lit(contradictory)))
    )
    low, high = pl.col("low"), pl.col("high")
    several = (
        checked.filter(~pl.col("_alone"))
        .group_by(keys)
        .agg(
            records=pl.len().cast(pl.UInt32),
            low=status.min(),
            high=status.max(),
            exam_date=pl.col("exam_date").max(),
            discharge_grade=pl.when(grade.min() == grade.max()).then(grade.min()).otherwise(None),
            grade_missing=grade.is_null().any(),
            event_ids=pl.col("event_id").sort(),
        )
        .with_columns(
            discharge_grade=pl.when(~pl.col("grade_missing")).then(pl.col("discharge_grade")),
            inconsistent=(low != high) | (low == CONTRADICTORY),
        )
        .with_columns(
            status=pl.when(~pl.col("inconsistent")).then(low),
            inconsistency=pl.when((low == CONTRADICTORY) | (high == CONTRADICTORY))
            .then(pl.lit(contradictory))
            .when(pl.col("inconsistent"))
            .then(pl.lit("current records disagree: ") + low + pl.lit(" vs ") + high),
        )
        .drop("low", "high", "grade_missing")
    )
    return pl.concat([single, several])


def clinical_sustained(tracts: pl.LazyFrame, visits: pl.LazyFrame, rules: RuleSet) -> pl.LazyFrame:
    """Rule clinical.sustained: adds its columns to ``tracts`` (one row per tract).

    ``clinical`` is CLOSED (closed at every confirmation visit, consecutive ones at least
    ``min_gap_days`` apart), NOT_CLOSED (a confirmation visit determined not closed, or closed
    visits too close together), or null (undecided: a visit missing or inconsistent).
    ``fu6_closed`` is the single-visit status the ADMIRE-style definition uses.
    """
    confirm = rules.confirmation_visits
    # One column group per confirmation visit (a join each): no sort or window over tracts.
    summary = tracts
    for i, visit in enumerate(confirm):
        summary = summary.join(
            visits.filter(pl.col("visit") == visit).select(
                *TRACT_KEY,
                pl.col("status").alias(f"_status{i}"),
                pl.col("exam_date").alias(f"_date{i}"),
                pl.col("inconsistent").alias(f"_inconsistent{i}"),
                pl.col("event_ids").alias(f"_events{i}"),
                pl.lit(True).alias(f"_present{i}"),
            ),
            on=TRACT_KEY,
            how="left",
            maintain_order="left",
        )
    steps = range(len(confirm))
    present = [pl.col(f"_present{i}").fill_null(False) for i in steps]
    status = [pl.col(f"_status{i}") for i in steps]
    gaps = [(pl.col(f"_date{i}") - pl.col(f"_date{i - 1}")).dt.total_days() for i in steps if i]
    missing = pl.concat_str(
        [pl.when(~p).then(pl.lit(v)) for p, v in zip(present, confirm, strict=True)],
        separator=", ",
        ignore_nulls=True,
    )
    summary = summary.with_columns(
        fu6_present=present[-1],
        fu6_status=status[-1],
        missing_visits=pl.when(missing != "").then(missing),
        any_open=pl.any_horizontal(
            [(s.is_not_null() & (s != CLOSED)).fill_null(False) for s in status]
        ),
        any_inconsistent=pl.any_horizontal(
            [pl.col(f"_inconsistent{i}").fill_null(False) for i in steps]
        ),
        min_gap=pl.min_horizontal(gaps) if gaps else pl.lit(None, pl.Int64),
        clinical_event_ids=pl.concat_list([pl.col(f"_events{i}").fill_null([]) for i in steps]),
    ).select(pl.exclude("^_.*$"))
    fu6_closed = pl.col("fu6_status") == CLOSED
    gap_ok = pl.col("min_gap").is_null() | (pl.col("min_gap") >= rules.clinical.min_gap_days)
    return (
        summary.with_columns(
            fu6_closed=pl.when(pl.col("fu6_status").is_not_null()).then(fu6_closed)
        )
        .with_columns(
            clinical=pl.when(pl.col("fu6_status").is_not_null() & ~fu6_closed)
            .then(pl.lit("NOT_CLOSED"))
            .when(fu6_closed & pl.col("any_open"))
            .then(pl.lit("NOT_CLOSED"))
            .when(fu6_closed & pl.col("missing_visits").is_null() & ~pl.col("any_inconsistent"))
            .then(pl.when(gap_ok).then(pl.lit("CLOSED")).otherwise(pl.lit("NOT_CLOSED"))),
            clinical_reason=pl.when(pl.col("fu6_status").is_not_null() & ~fu6_closed)
            .then(pl.lit(f"{rules.primary_visit} ") + pl.col("fu6_status"))
            .when(fu6_closed & pl.col("any_open"))
            .then(pl.lit(f"closed at {rules.primary_visit} but not at every confirmation visit"))
            .when(~pl.col("fu6_present"))
            .then(pl.lit(f"{rules.primary_visit} missing"))
            .when(pl.col("fu6_status").is_null())
            .then(pl.lit(f"{rules.primary_visit} inconsistent"))
            .when(pl.col("missing_visits").is_not_null())
            .then(pl.lit("missing: ") + pl.col("missing_visits"))
            .when(pl.col("any_inconsistent"))
            .then(pl.lit("a confirmation visit is inconsistent"))
            .when(~gap_ok)
            .then(pl.lit(f"closed visits less than {rules.clinical.min_gap_days} days apart"))
            .otherwise(pl.lit(f"closed at {', '.join(confirm)}")),
        )
        .drop("min_gap", "fu6_status", "any_open", "any_inconsistent")
    )
