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
    checked = exam_status(exams).with_columns(records=pl.len().over(keys).cast(pl.UInt32))
    # Almost every visit has one record: only the others need grouping (a much smaller job).
    single = checked.filter(pl.col("records") == 1).select(
        *keys,
        "records",
        low=status,
        high=status,
        exam_date="exam_date",
        discharge_grade=grade,
        event_ids=pl.concat_list("event_id"),
    )
    several = (
        checked.filter(pl.col("records") > 1)
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
            discharge_grade=pl.when(~pl.col("grade_missing")).then(pl.col("discharge_grade"))
        )
        .drop("grade_missing")
    )
    return (
        pl.concat([single, several])
        .with_columns(
            inconsistent=(pl.col("low") != pl.col("high")) | (pl.col("low") == CONTRADICTORY)
        )
        .with_columns(
            status=pl.when(~pl.col("inconsistent")).then(pl.col("low")),
            inconsistency=pl.when(
                (pl.col("low") == CONTRADICTORY) | (pl.col("high") == CONTRADICTORY)
            )
            .then(pl.lit("external opening CLOSED with drainage on compression"))
            .when(pl.col("inconsistent"))
            .then(
                pl.lit("current records disagree: ")
                + pl.col("low")
                + pl.lit(" vs ")
                + pl.col("high")
            ),
        )
        .drop("low", "high")
    )


def clinical_sustained(tracts: pl.LazyFrame, visits: pl.LazyFrame, rules: RuleSet) -> pl.LazyFrame:
    """Rule clinical.sustained, one row per tract of ``tracts``.

    ``clinical`` is CLOSED (closed at every confirmation visit, consecutive ones at least
    ``min_gap_days`` apart), NOT_CLOSED (a confirmation visit determined not closed, or closed
    visits too close together), or null (undecided: a visit missing or inconsistent).
    ``fu6_closed`` is the single-visit status the ADMIRE-style definition uses.
    """
    confirm = rules.confirmation_visits
    order = {visit: i for i, visit in enumerate(confirm)}
    last = pl.col("visit") == rules.primary_visit
    window = (
        visits.filter(pl.col("visit").is_in(confirm))
        .with_columns(_order=pl.col("visit").replace_strict(order, return_dtype=pl.Int32))
        .sort(*TRACT_KEY, "_order")
        .with_columns(
            _gap=(pl.col("exam_date") - pl.col("exam_date").shift(1))
            .dt.total_days()
            .over(TRACT_KEY)
        )
    )
    determined_open = pl.col("status").is_not_null() & (pl.col("status") != CLOSED)
    summary = (
        tracts.select(TRACT_KEY)
        .join(
            window.group_by(TRACT_KEY).agg(
                fu6_present=last.any(),
                fu6_status=pl.col("status").filter(last).first(),
                present=pl.col("visit"),
                any_open=determined_open.any(),
                any_inconsistent=pl.col("inconsistent").any(),
                min_gap=pl.col("_gap").min(),
            ),
            on=TRACT_KEY,
            how="left",
        )
        .with_columns(
            pl.col("fu6_present", "any_open", "any_inconsistent").fill_null(False),
            pl.col("present").fill_null([]),
        )
    )
    missing = pl.lit(list(confirm)).list.set_difference(pl.col("present"))
    fu6_closed = pl.col("fu6_status") == CLOSED
    gap_ok = pl.col("min_gap").is_null() | (pl.col("min_gap") >= rules.clinical.min_gap_days)
    return (
        summary.with_columns(
            missing_visits=missing.list.sort(),
            fu6_closed=pl.when(pl.col("fu6_status").is_not_null()).then(fu6_closed),
        )
        .with_columns(
            clinical=pl.when(pl.col("fu6_status").is_not_null() & ~fu6_closed)
            .then(pl.lit("NOT_CLOSED"))
            .when(fu6_closed & pl.col("any_open"))
            .then(pl.lit("NOT_CLOSED"))
            .when(
                fu6_closed
                & (pl.col("missing_visits").list.len() == 0)
                & ~pl.col("any_inconsistent")
            )
            .then(pl.when(gap_ok).then(pl.lit("CLOSED")).otherwise(pl.lit("NOT_CLOSED"))),
            clinical_reason=pl.when(pl.col("fu6_status").is_not_null() & ~fu6_closed)
            .then(pl.lit(f"{rules.primary_visit} ") + pl.col("fu6_status"))
            .when(fu6_closed & pl.col("any_open"))
            .then(pl.lit(f"closed at {rules.primary_visit} but not at every confirmation visit"))
            .when(~pl.col("fu6_present"))
            .then(pl.lit(f"{rules.primary_visit} missing"))
            .when(pl.col("fu6_status").is_null())
            .then(pl.lit(f"{rules.primary_visit} inconsistent"))
            .when(pl.col("missing_visits").list.len() > 0)
            .then(pl.lit("missing: ") + pl.col("missing_visits").list.join(", "))
            .when(pl.col("any_inconsistent"))
            .then(pl.lit("a confirmation visit is inconsistent"))
            .when(~gap_ok)
            .then(pl.lit(f"closed visits less than {rules.clinical.min_gap_days} days apart"))
            .otherwise(pl.lit(f"closed at {', '.join(confirm)}")),
        )
        .drop("present", "min_gap", "fu6_status", "any_open", "any_inconsistent")
    )
