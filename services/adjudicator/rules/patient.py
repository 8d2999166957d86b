"""Rule ``patient.category``: a completer's category from the outcomes of their treated tracts."""

from __future__ import annotations

import polars as pl

FULL_CLOSURE, IMPROVED, RESISTANT, PENDING, WITHDRAWN = (
    "FULL_CLOSURE",
    "IMPROVED",
    "RESISTANT",
    "PENDING",
    "WITHDRAWN",
)
CATEGORIES = (FULL_CLOSURE, IMPROVED, RESISTANT, PENDING)


def patient_category(
    tracts: pl.LazyFrame, subjects: pl.LazyFrame, outcome: str = "outcome"
) -> pl.LazyFrame:
    """One row per subject. Withdrawn subjects are WITHDRAWN; subjects still in follow-up are
    PENDING; a completer is PENDING while any treated tract is, then FULL_CLOSURE, IMPROVED
    (a tract closed or with improved discharge) or RESISTANT. A tract the committee found not
    evaluable counts as not closed. A subject with no treated tract is NOT_EVALUABLE."""
    treated = tracts.filter(pl.col("treated"))
    per_subject = treated.group_by("subject_id").agg(
        n_treated=pl.len(),
        n_closed=(pl.col(outcome) == "CLOSED").sum(),
        n_pending=(pl.col(outcome) == "PENDING").sum(),
        any_discharge_improved=pl.col("discharge_improved").fill_null(False).any(),
    )
    closed, n = pl.col("n_closed"), pl.col("n_treated")
    return (
        subjects.select("subject_id", pl.col("status").alias("subject_status"))
        .join(per_subject, on="subject_id", how="left")
        .with_columns(
            pl.col("n_treated", "n_closed", "n_pending").fill_null(0),
            pl.col("any_discharge_improved").fill_null(False),
        )
        .with_columns(
            category=pl.when(pl.col("subject_status") == "WITHDRAWN")
            .then(pl.lit(WITHDRAWN))
            .when(pl.col("subject_status") != "COMPLETED")
            .then(pl.lit(PENDING))
            .when(n == 0)
            .then(pl.lit("NOT_EVALUABLE"))
            .when(pl.col("n_pending") > 0)
            .then(pl.lit(PENDING))
            .when(closed == n)
            .then(pl.lit(FULL_CLOSURE))
            .when((closed > 0) | pl.col("any_discharge_improved"))
            .then(pl.lit(IMPROVED))
            .otherwise(pl.lit(RESISTANT))
        )
    )
