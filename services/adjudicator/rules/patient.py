"""Rule ``patient.category``: a completer's category from the outcomes of their treated tracts."""

from __future__ import annotations

import polars as pl

FULL_CLOSURE, IMPROVED, RESISTANT, PENDING, WITHDRAWN, NOT_EVALUABLE = (
    "FULL_CLOSURE",
    "IMPROVED",
    "RESISTANT",
    "PENDING",
    "WITHDRAWN",
    "NOT_EVALUABLE",
)
CATEGORIES = (FULL_CLOSURE, IMPROVED, RESISTANT, PENDING, NOT_EVALUABLE)
"""Every category a completer can have: a completer table counts each, so they add up to n."""


def patient_category(
    tracts: pl.LazyFrame,
    subjects: pl.LazyFrame,
    definitions: dict[str, str] | None = None,
    discharge: dict[str, str] | None = None,
) -> pl.LazyFrame:
    """One row per subject, with a category column per definition (outcome column -> category
    column; default ``{"outcome": "category"}``), all from one pass over the tracts.
    ``discharge`` names a definition's own discharge column (default ``discharge_improved``).

    Withdrawn subjects are WITHDRAWN; subjects still in follow-up, or whose status is unknown
    (no subject record), are PENDING; a completer is PENDING while any treated tract is, then
    FULL_CLOSURE, IMPROVED (a tract closed or with improved discharge) or RESISTANT. A tract the
    committee found not evaluable counts as not closed. A completer with no treated tract is
    NOT_EVALUABLE.
    """
    definitions = definitions or {"outcome": "category"}
    discharge = discharge or {}
    first = next(iter(definitions))

    def improved(outcome: str) -> pl.Expr:
        column = discharge.get(outcome, "discharge_improved")
        return pl.col(column).fill_null(False).any().alias(f"_improved_{outcome}")

    per_subject = (
        tracts.filter(pl.col("treated"))
        .group_by("subject_id")
        .agg(
            pl.len().alias("n_treated"),
            *[improved(o) for o in definitions],
            *[(pl.col(o) == "CLOSED").sum().alias(f"_closed_{o}") for o in definitions],
            *[(pl.col(o) == "PENDING").sum().alias(f"_pending_{o}") for o in definitions],
        )
    )
    frame = (
        subjects.select("subject_id", pl.col("status").alias("subject_status"))
        .join(per_subject, on="subject_id", how="left")
        .with_columns(
            pl.col("n_treated").fill_null(0),
            any_discharge_improved=pl.col(f"_improved_{first}").fill_null(False),
        )
    )
    n = pl.col("n_treated")
    status = pl.col("subject_status")

    def category(outcome: str) -> pl.Expr:
        closed, pending = (
            pl.col(f"_closed_{outcome}").fill_null(0),
            pl.col(f"_pending_{outcome}").fill_null(0),
        )
        return (
            pl.when(status == "WITHDRAWN")
            .then(pl.lit(WITHDRAWN))
            .when(status.is_null() | (status != "COMPLETED"))
            .then(pl.lit(PENDING))
            .when(n == 0)
            .then(pl.lit(NOT_EVALUABLE))
            .when(pending > 0)
            .then(pl.lit(PENDING))
            .when(closed == n)
            .then(pl.lit(FULL_CLOSURE))
            .when((closed > 0) | pl.col(f"_improved_{outcome}").fill_null(False))
            .then(pl.lit(IMPROVED))
            .otherwise(pl.lit(RESISTANT))
        )

    return frame.with_columns(
        n_closed=pl.col(f"_closed_{first}").fill_null(0),
        n_pending=pl.col(f"_pending_{first}").fill_null(0),
        **{column: category(outcome) for outcome, column in definitions.items()},
    ).select(pl.exclude("^_.*$"))
