"""Rule ``schedule.windows`` (PROTOCOL.md, Schedule): each assessment's study day against the
window of its visit or MRI timepoint, from the rule set.

Day 0 is per subject: the earliest administration of the day-0 injection visit (INJ1), or,
when no injection of that visit is recorded, the earliest exam of that visit. Without either
the study day is unknown and so is ``in_window`` (null): nothing is flagged on a guess.
"""

from __future__ import annotations

import polars as pl

from services.adjudicator.ruleset import RuleSet


def day_zero(injections: pl.LazyFrame, exams: pl.LazyFrame, rules: RuleSet) -> pl.LazyFrame:
    """One row per subject with a known day 0: ``subject_id``, ``day0``."""
    injected = (
        injections.filter(pl.col("visit") == rules.day0_visit)
        .group_by("subject_id")
        .agg(_injected=pl.col("administered_on").min())
    )
    examined = (
        exams.filter(pl.col("visit") == rules.day0_visit)
        .group_by("subject_id")
        .agg(_examined=pl.col("exam_date").min())
    )
    return injected.join(examined, on="subject_id", how="full", coalesce=True).select(
        "subject_id", day0=pl.coalesce("_injected", "_examined")
    )


def windows(rules: RuleSet) -> pl.LazyFrame:
    """The rule set's windows: ``assessment``, ``window_from``, ``window_to`` (study days)."""
    return pl.LazyFrame(
        {
            "assessment": [w.name for w in rules.windows],
            "window_from": [w.day - w.early for w in rules.windows],
            "window_to": [w.day + w.late for w in rules.windows],
        },
        schema={"assessment": pl.String, "window_from": pl.Int64, "window_to": pl.Int64},
    )


def window_flags(
    records: pl.LazyFrame, assessment: str, date: str, day0: pl.LazyFrame, rules: RuleSet
) -> pl.LazyFrame:
    """One row per record, in the records' order (to set beside them): ``study_day`` (``date``
    minus the subject's day 0) and ``in_window``, whether that day lies in the window of the
    record's ``assessment`` (a visit or MRI timepoint column), both ends allowed; null when
    day 0 or the window is unknown. Only three narrow columns are joined, never the records."""
    day = pl.col("study_day")
    return (
        records.select("subject_id", assessment, date)
        .join(day0, on="subject_id", how="left", maintain_order="left")
        .join(
            windows(rules),
            left_on=assessment,
            right_on="assessment",
            how="left",
            maintain_order="left",
        )
        .with_columns(study_day=(pl.col(date) - pl.col("day0")).dt.total_days())
        .select(
            "study_day", in_window=(day >= pl.col("window_from")) & (day <= pl.col("window_to"))
        )
    )
