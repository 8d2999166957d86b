"""Sensitivity definitions, computed beside the primary one and never replacing it.
Committee decisions do not apply to them."""

from __future__ import annotations

import polars as pl

from services.adjudicator.rules.primary import closure

DEFINITIONS = ("ADMIRE_COMBINED", "CLINICAL_ONLY", "RESPONSE_50")


def sensitivity_outcomes(tracts: pl.LazyFrame) -> pl.LazyFrame:
    """Per tract: ``admire_outcome`` (clinical closure at the primary visit alone AND no large
    collection on MRI, T2 ignored) and ``clinical_only_outcome`` (sustained closure, MRI ignored).
    Needs ``fu6_closed``, ``clinical`` and ``mri_dry`` (the collection-only consensus)."""
    fu6 = (
        pl.when(pl.col("fu6_closed"))
        .then(pl.lit("CLOSED"))
        .when(~pl.col("fu6_closed"))
        .then(pl.lit("NOT_CLOSED"))
    )
    return tracts.with_columns(
        admire_outcome=closure(fu6, pl.col("mri_dry")),
        clinical_only_outcome=pl.col("clinical").fill_null("PENDING"),
    )


def response_50(tracts: pl.LazyFrame, fraction: float) -> pl.LazyFrame:
    """RESPONSE_50 per subject: at least ``fraction`` of treated tracts clinically closed at the
    primary visit; null while any treated tract's primary-visit status is unknown."""
    return (
        tracts.filter(pl.col("treated"))
        .group_by("subject_id")
        .agg(
            fu6_closed=pl.col("fu6_closed").fill_null(False).sum(),
            fu6_unknown=pl.col("fu6_closed").is_null().sum(),
            n_treated=pl.len(),
        )
        .select(
            "subject_id",
            response_50=pl.when((pl.col("fu6_closed") / pl.col("n_treated")) >= fraction)
            .then(True)
            .when(pl.col("fu6_unknown") == 0)
            .then(False),
        )
    )
