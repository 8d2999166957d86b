"""Rules ``clinical.status`` and ``clinical.sustained`` (PROTOCOL.md: clinical status, sustained closure)."""

from __future__ import annotations

import polars as pl

from services.adjudicator.rules import TRACT_KEY
from services.adjudicator.ruleset import RuleSet

CLOSED, OPEN, NOT_DRAINING, CONTRADICTORY = "CLOSED", "OPEN", "NOT_DRAINING", "CONTRADICTORY"
CONTRADICTION = "external opening CLOSED with drainage on compression"


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


def _listed(values: pl.Expr) -> pl.Expr:
    """The distinct values of a group as text ("0 vs 1"; a missing value reads "missing")."""
    return values.cast(pl.String).fill_null("missing").unique().sort().str.join(" vs ")


def visit_status(exams: pl.LazyFrame) -> pl.LazyFrame:
    """One row per tract and visit.

    Current records of one visit must agree on every field a rule reads (status, discharge
    grade, exam date); any difference, or a contradictory record, makes the visit
    ``inconsistent`` (an INCONSISTENT_EXAM conflict) with the reason in ``inconsistency``.
    ``status`` is the agreed status (null when the records disagree on it or one is
    contradictory). ``closed`` is what the closure rules read: true when every record is CLOSED,
    false when none is closed and none contradictory (OPEN vs NOT_DRAINING is still not closed),
    null otherwise. ``discharge_grade`` is null when the grades differ. ``first_date`` and
    ``last_date`` bound the exam dates (``exam_date`` is the last). ``in_window`` (when the exams
    carry it): false when any record is out of its visit window.
    """
    keys = [*TRACT_KEY, "visit"]
    status, grade, date = pl.col("exam_status"), pl.col("discharge_grade"), pl.col("exam_date")
    if "in_window" not in exams.collect_schema().names():
        exams = exams.with_columns(in_window=pl.lit(None, pl.Boolean))
    # Almost every visit has one record: only the others need grouping (a much smaller job).
    # Rows whose key hash is unique are certainly alone; a hash collision only sends a few
    # more rows to the exact grouping below.
    checked = exam_status(exams).with_columns(_alone=pl.len().over(pl.struct(keys).hash()) == 1)
    contradictory = status == CONTRADICTORY
    single = checked.filter("_alone").select(
        *keys,
        records=pl.lit(1, pl.UInt32),
        exam_date=date,
        first_date=date,
        last_date=date,
        discharge_grade=grade,
        event_ids=pl.concat_list("event_id"),
        inconsistent=contradictory,
        status=pl.when(~contradictory).then(status),
        closed=pl.when(~contradictory).then(status == CLOSED),
        inconsistency=pl.when(contradictory).then(pl.lit(CONTRADICTION)),
        in_window="in_window",
    )
    n, n_closed = pl.col("records"), pl.col("_n_closed")
    statuses, grades, dates = pl.col("_statuses"), pl.col("_grades"), pl.col("_dates")
    several = (
        checked.filter(~pl.col("_alone"))
        .group_by(keys)
        .agg(
            records=pl.len().cast(pl.UInt32),
            _n_closed=(status == CLOSED).sum(),
            _contradictory=contradictory.any(),
            _status=status.first(),
            _statuses=status.n_unique(),
            _status_text=_listed(status),
            _grade=grade.first(),
            _grades=grade.n_unique(),
            _grade_text=_listed(grade),
            first_date=date.min(),
            last_date=date.max(),
            _dates=date.n_unique(),
            _date_text=_listed(date),
            event_ids=pl.col("event_id").sort(),
            # any() of a column of nulls is false: keep null (unknown) unless a record is out.
            in_window=pl.when(pl.col("in_window").not_().any())
            .then(False)
            .when(pl.col("in_window").all() & pl.col("in_window").is_not_null().all())
            .then(True),
        )
        .with_columns(
            exam_date="last_date",
            discharge_grade=pl.when(grades == 1).then(pl.col("_grade")),
            status=pl.when((statuses == 1) & ~pl.col("_contradictory")).then(pl.col("_status")),
            closed=pl.when(pl.col("_contradictory"))
            .then(None)
            .when(n_closed == n)
            .then(True)
            .when(n_closed == 0)
            .then(False),
            inconsistent=pl.col("_contradictory") | (statuses > 1) | (grades > 1) | (dates > 1),
            _why=pl.concat_str(
                [
                    pl.when(pl.col("_contradictory")).then(pl.lit(CONTRADICTION)),
                    pl.when(statuses > 1).then(
                        pl.lit("current records disagree: ") + pl.col("_status_text")
                    ),
                    pl.when(grades > 1).then(
                        pl.lit("current records disagree on discharge grade: ")
                        + pl.col("_grade_text")
                    ),
                    pl.when(dates > 1).then(
                        pl.lit("current records disagree on exam date: ") + pl.col("_date_text")
                    ),
                ],
                separator="; ",
                ignore_nulls=True,
            ),
        )
        .with_columns(inconsistency=pl.when(pl.col("_why") != "").then("_why"))
        .select(single.collect_schema().names())
    )
    return pl.concat([single, several])


def clinical_sustained(tracts: pl.LazyFrame, visits: pl.LazyFrame, rules: RuleSet) -> pl.LazyFrame:
    """Rule clinical.sustained: adds its columns to ``tracts`` (one row per tract).

    ``clinical`` is NOT_CLOSED as soon as a confirmation visit is definitively not closed (even
    while another is missing or inconsistent); CLOSED when every confirmation visit is closed
    and consecutive ones are certainly at least ``min_gap_days`` apart; NOT_CLOSED when they are
    certainly closer; null (undecided) otherwise: a visit missing or inconsistent, visits out of
    date order (``visit_order`` says which; a data query), or exam dates that disagree across
    the threshold. ``fu6_closed`` is the single-visit status the ADMIRE-style definition uses.
    """
    confirm = rules.confirmation_visits
    # One column group per confirmation visit (a join each): no sort or window over tracts.
    summary = tracts
    for i, visit in enumerate(confirm):
        summary = summary.join(
            visits.filter(pl.col("visit") == visit).select(
                *TRACT_KEY,
                pl.col("status").alias(f"_status{i}"),
                pl.col("closed").alias(f"_closed{i}"),
                pl.col("first_date").alias(f"_first{i}"),
                pl.col("last_date").alias(f"_last{i}"),
                pl.col("event_ids").alias(f"_events{i}"),
                pl.lit(True).alias(f"_present{i}"),
            ),
            on=TRACT_KEY,
            how="left",
            maintain_order="left",
        )
    steps = range(len(confirm))
    present = [pl.col(f"_present{i}").fill_null(False) for i in steps]
    closed = [pl.col(f"_closed{i}") for i in steps]
    pairs = [i for i in steps if i]
    # Dates may disagree within a visit: the shortest and longest gap the records allow.
    shortest = [(pl.col(f"_first{i}") - pl.col(f"_last{i - 1}")).dt.total_days() for i in pairs]
    longest = [(pl.col(f"_last{i}") - pl.col(f"_first{i - 1}")).dt.total_days() for i in pairs]
    missing = pl.concat_str(
        [pl.when(~p).then(pl.lit(v)) for p, v in zip(present, confirm, strict=True)],
        separator=", ",
        ignore_nulls=True,
    )
    order = pl.concat_str(
        [
            pl.when(gap <= 0).then(
                pl.lit(f"{confirm[i]} (")
                + pl.col(f"_first{i}").dt.to_string("%Y-%m-%d")
                + pl.lit(f") is not after {confirm[i - 1]} (")
                + pl.col(f"_last{i - 1}").dt.to_string("%Y-%m-%d")
                + pl.lit(")")
            )
            for i, gap in zip(pairs, shortest, strict=True)
        ]
        or [pl.lit(None, pl.String)],
        separator="; ",
        ignore_nulls=True,
    )
    summary = summary.with_columns(
        fu6_present=present[-1],
        fu6_closed=closed[-1],
        _fu6_status=pl.col(f"_status{len(confirm) - 1}"),
        missing_visits=pl.when(missing != "").then(missing),
        visit_order=pl.when(order != "").then(order),
        _any_not_closed=pl.any_horizontal([(c == False).fill_null(False) for c in closed]),  # noqa: E712
        _all_closed=pl.all_horizontal([c.fill_null(False) for c in closed]),
        _shortest=pl.min_horizontal(shortest) if shortest else pl.lit(None, pl.Int64),
        _longest=pl.min_horizontal(longest) if longest else pl.lit(None, pl.Int64),
        clinical_event_ids=pl.concat_list([pl.col(f"_events{i}").fill_null([]) for i in steps]),
    )
    m = rules.clinical.min_gap_days
    primary = rules.primary_visit
    fu6_closed, all_closed = pl.col("fu6_closed"), pl.col("_all_closed")
    certainly_apart = pl.col("_shortest").is_null() | (pl.col("_shortest") >= m)
    certainly_close = pl.col("_longest") < m
    out_of_order = pl.col("visit_order").is_not_null()
    return summary.with_columns(
        clinical=pl.when(pl.col("_any_not_closed"))
        .then(pl.lit("NOT_CLOSED"))
        .when(all_closed & ~out_of_order & certainly_apart)
        .then(pl.lit("CLOSED"))
        .when(all_closed & ~out_of_order & certainly_close)
        .then(pl.lit("NOT_CLOSED")),
        clinical_reason=pl.when(fu6_closed == False)  # noqa: E712
        .then(
            pl.lit(f"{primary} ")
            + pl.col("_fu6_status").fill_null("not closed (current records disagree)")
        )
        .when(pl.col("_any_not_closed") & fu6_closed)
        .then(pl.lit(f"closed at {primary} but not at every confirmation visit"))
        .when(pl.col("_any_not_closed"))
        .then(pl.lit(f"not closed at a confirmation visit ({primary} undetermined)"))
        .when(~pl.col("fu6_present"))
        .then(pl.lit(f"{primary} missing"))
        .when(fu6_closed.is_null())
        .then(pl.lit(f"{primary} inconsistent"))
        .when(pl.col("missing_visits").is_not_null())
        .then(pl.lit("missing: ") + pl.col("missing_visits"))
        .when(~all_closed)
        .then(pl.lit("a confirmation visit is inconsistent"))
        .when(out_of_order)
        .then(pl.lit("visits out of date order: ") + pl.col("visit_order"))
        .when(certainly_close)
        .then(pl.lit(f"closed visits less than {m} days apart"))
        .when(~certainly_apart)
        .then(pl.lit(f"exam dates disagree: closed visits may be less than {m} days apart"))
        .otherwise(pl.lit(f"closed at {', '.join(confirm)}")),
    ).select(pl.exclude("^_.*$"))
