"""Sensitivity definitions, computed beside the primary one and never replacing it.
Committee decisions on a tract's status do not apply to them (a MAPPED decision re-keys
evidence for every definition: it says which tract a record is about, not how it ended)."""

from __future__ import annotations

import polars as pl

from services.adjudicator.rules import TRACT_KEY
from services.adjudicator.rules.clinical import clinical_sustained, visit_status
from services.adjudicator.rules.discharge import discharge_improved
from services.adjudicator.rules.mri import mri_consensus
from services.adjudicator.rules.primary import closure
from services.adjudicator.ruleset import RuleSet

DEFINITIONS = ("ADMIRE_COMBINED", "CLINICAL_ONLY", "RESPONSE_50", "IN_WINDOW")


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


def in_window_outcomes(
    tracts: pl.LazyFrame, exams: pl.LazyFrame, reads: pl.LazyFrame, rules: RuleSet
) -> pl.LazyFrame:
    """IN_WINDOW: the primary rules (no committee decisions) on in-window assessments only;
    an out-of-window exam or read is left out as if it had not been done (``in_window`` false;
    unknown counts as in). Adds ``in_window_outcome`` and ``in_window_discharge_improved``.

    Needs ``rule_outcome`` and ``discharge_improved`` on ``tracts``: only the (few) tracts with
    an out-of-window assessment are adjudicated again; the others keep their rule results.
    """
    late = pl.col("in_window") == False  # noqa: E712
    touched = (
        pl.concat([exams.filter(late).select(TRACT_KEY), reads.filter(late).select(TRACT_KEY)])
        .unique()
        .join(tracts.select(TRACT_KEY), on=TRACT_KEY, how="semi")
        .collect()
    )
    if touched.is_empty():  # the usual case: every assessment in its window
        return tracts.with_columns(
            in_window_outcome="rule_outcome", in_window_discharge_improved="discharge_improved"
        )
    keys = touched.lazy()
    keep = pl.col("in_window").fill_null(True)
    kept_exams = exams.join(keys, on=TRACT_KEY, how="semi").filter(keep)
    kept_reads = reads.join(keys, on=TRACT_KEY, how="semi").filter(keep)
    visits = visit_status(kept_exams)
    again = pl.concat(
        [
            keys,
            clinical_sustained(keys, visits, rules).select("clinical"),
            mri_consensus(keys, kept_reads, rules).select("mri"),
            discharge_improved(keys, visits, rules).select("discharge_improved"),
        ],
        how="horizontal",
    ).select(
        *TRACT_KEY,
        _outcome=closure(pl.col("clinical"), pl.col("mri")),
        _improved="discharge_improved",
        _touched=pl.lit(True),
    )
    touched_ = pl.col("_touched").fill_null(False)
    return (
        tracts.join(again, on=TRACT_KEY, how="left", maintain_order="left")
        .with_columns(
            in_window_outcome=pl.when(touched_).then("_outcome").otherwise("rule_outcome"),
            in_window_discharge_improved=pl.when(touched_)
            .then("_improved")
            .otherwise("discharge_improved"),
        )
        .drop("_outcome", "_improved", "_touched")
    )
