"""Rule ``discharge.improved`` (secondary outcome): the PDAI discharge grade falls by at least
``min_drop`` from the baseline visit to the primary visit."""

from __future__ import annotations

import polars as pl

from services.adjudicator.rules import TRACT_KEY
from services.adjudicator.ruleset import RuleSet


def discharge_improved(tracts: pl.LazyFrame, visits: pl.LazyFrame, rules: RuleSet) -> pl.LazyFrame:
    """Adds ``discharge_improved`` to ``tracts``: null (not evaluable) when either grade is
    missing or the records of a visit disagree on it."""

    def grade(visit: str, name: str) -> pl.LazyFrame:
        return visits.filter(pl.col("visit") == visit).select(
            *TRACT_KEY, pl.col("discharge_grade").alias(name), pl.col("event_ids").alias(f"_{name}")
        )

    before, after = pl.col("discharge_baseline"), pl.col("discharge_final")
    return (
        tracts.join(
            grade(rules.baseline_discharge_visit, "discharge_baseline"),
            on=TRACT_KEY,
            how="left",
            maintain_order="left",
        )
        .join(
            grade(rules.primary_visit, "discharge_final"),
            on=TRACT_KEY,
            how="left",
            maintain_order="left",
        )
        .with_columns(
            discharge_improved=(before - after) >= rules.discharge.min_drop,
            # The final visit is the primary one, whose exams the clinical rule names already.
            discharge_event_ids=pl.col("_discharge_baseline").fill_null([]),
        )
        .drop("_discharge_baseline", "_discharge_final")
    )
