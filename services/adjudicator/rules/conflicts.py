"""Conflict detection: every condition of PROTOCOL.md that needs the committee, with stable ids.

A conflict's id depends only on what it is about (study, type, subject, tract, visit or side),
so the same inputs give the same id; its fingerprint is the ids of the events behind it, so a
change of inputs after a decision is visible and reopens it.
"""

from __future__ import annotations

import polars as pl

from services.adjudicator.rules import TRACT_KEY
from services.adjudicator.ruleset import RuleSet
from services.events import digest

UNMATCHED_TRACT = "UNMATCHED_TRACT"
INCONSISTENT_EXAM = "INCONSISTENT_EXAM"
MISSING_ASSESSMENT = "MISSING_ASSESSMENT"
READER_DISAGREEMENT = "READER_DISAGREEMENT"
CLINICAL_MRI_DISCORDANCE = "CLINICAL_MRI_DISCORDANCE"
TYPES = (
    UNMATCHED_TRACT,
    INCONSISTENT_EXAM,
    MISSING_ASSESSMENT,
    READER_DISAGREEMENT,
    CLINICAL_MRI_DISCORDANCE,
)

CONFLICT_SCHEMA = pl.Schema(
    {
        "type": pl.String(),
        "subject_id": pl.String(),
        "tract_id": pl.String(),
        "about": pl.String(),
        "detail": pl.String(),
        "event_ids": pl.List(pl.String()),
    }
)
KEY = ("type", "subject_id", "tract_id", "about")


def _rows(
    frame: pl.LazyFrame,
    kind: str,
    about: pl.Expr,
    detail: pl.Expr,
    visits: list[str] | pl.Expr,
    reads: bool,
) -> pl.LazyFrame:
    """Conflict rows with the evidence behind them: exams at ``visits``, final reads if ``reads``."""
    return frame.select(
        type=pl.lit(kind),
        subject_id="subject_id",
        tract_id="tract_id",
        about=about,
        detail=detail,
        input_visits=visits
        if isinstance(visits, pl.Expr)
        else pl.lit(visits, dtype=pl.List(pl.String)),
        input_reads=pl.lit(reads),
    )


def unmatched_tracts(
    evidence: dict[str, pl.LazyFrame], tracts: pl.LazyFrame, active: pl.LazyFrame
) -> pl.LazyFrame:
    """Tract ids in exams, reads, reports or injections that are not in the subject's registry.
    ``active`` lists the subjects conflicts may concern (not withdrawn)."""
    seen = pl.concat(
        [
            frame.select(*TRACT_KEY, "event_id", source=pl.lit(label))
            for label, frame in evidence.items()
        ]
    )
    unmatched = (
        seen.join(tracts.select(TRACT_KEY), on=TRACT_KEY, how="anti")
        .join(active, on="subject_id", how="semi")
        .group_by(TRACT_KEY)
        .agg(event_ids=pl.col("event_id").unique().sort(), sources=pl.col("source").unique().sort())
    )
    return unmatched.select(
        type=pl.lit(UNMATCHED_TRACT),
        subject_id="subject_id",
        tract_id="tract_id",
        about=pl.lit("registry"),
        detail=pl.lit("tract ")
        + pl.col("tract_id")
        + pl.lit(" is not in the registry of ")
        + pl.col("subject_id")
        + pl.lit(" (seen in ")
        + pl.col("sources").list.join(", ")
        + pl.lit(")"),
        event_ids="event_ids",
    )


def outcome_conflicts(visits: pl.LazyFrame, tracts: pl.LazyFrame, rules: RuleSet) -> pl.LazyFrame:
    """The other four types, from the per-visit and per-tract frames of the rules, each with
    the inputs behind it (``input_visits``, ``input_reads``) for :func:`with_event_ids`.

    ``visits`` needs the clinical visit status; ``tracts`` the per-tract frame with ``active``,
    ``completed`` and ``treated``.
    """
    confirm = list(rules.confirmation_visits)
    inconsistent = _rows(
        visits.filter("inconsistent").join(
            tracts.filter("active").select(TRACT_KEY), on=TRACT_KEY, how="semi"
        ),
        INCONSISTENT_EXAM,
        pl.col("visit"),
        pl.col("inconsistency") + pl.lit(" at ") + pl.col("visit"),
        pl.concat_list(pl.col("visit")),
        reads=False,
    )
    assessed = tracts.filter(pl.col("active") & pl.col("treated"))
    completed = assessed.filter(pl.col("completed"))
    fu6_closed = pl.col("fu6_closed").fill_null(False)
    missing_clinical = _rows(
        completed.filter(
            pl.col("clinical").is_null()
            & (~pl.col("fu6_present") | (fu6_closed & pl.col("missing_visits").is_not_null()))
        ),
        MISSING_ASSESSMENT,
        pl.lit("clinical"),
        pl.lit("clinical assessment missing: ") + pl.col("clinical_reason"),
        confirm,
        reads=False,
    )
    missing_mri = _rows(
        completed.filter(pl.col("missing_reads")),
        MISSING_ASSESSMENT,
        pl.lit("mri"),
        pl.lit("MRI assessment missing: ") + pl.col("mri_basis"),
        [],
        reads=True,
    )
    disagreement = _rows(
        assessed.filter(pl.col("needs_adjudicator")),
        READER_DISAGREEMENT,
        pl.lit("mri"),
        pl.lit("R1 says ")
        + pl.when(pl.col("r1_healed")).then(pl.lit("healed")).otherwise(pl.lit("not healed"))
        + pl.lit(", R2 says ")
        + pl.when(pl.col("r2_healed")).then(pl.lit("healed")).otherwise(pl.lit("not healed"))
        + pl.lit("; no evaluable adjudicator read"),
        [],
        reads=True,
    )
    discordance = _rows(
        assessed.filter(pl.col("discordant")),
        CLINICAL_MRI_DISCORDANCE,
        pl.lit("primary"),
        pl.lit("clinical ")
        + pl.col("clinical")
        + pl.lit(f" ({rules.primary_visit}: ")
        + pl.col("clinical_reason")
        + pl.lit("), MRI ")
        + pl.col("mri")
        + pl.lit(" (")
        + pl.col("mri_basis")
        + pl.lit(")"),
        confirm,
        reads=True,
    )
    return pl.concat([inconsistent, missing_clinical, missing_mri, disagreement, discordance])


def with_event_ids(
    conflicts: pl.LazyFrame, exams: pl.LazyFrame, final_reads: pl.LazyFrame
) -> pl.LazyFrame:
    """The ids of the events behind each conflict, looked up for the conflicts alone (they are
    few; the evidence is large, so nothing is carried per tract for this)."""
    from_exams = (
        conflicts.select(*KEY, visit="input_visits")
        .explode("visit")
        .join(exams.select(*TRACT_KEY, "visit", "event_id"), on=[*TRACT_KEY, "visit"])
        .select(*KEY, "event_id")
    )
    from_reads = (
        conflicts.filter(pl.col("input_reads"))
        .select(KEY)
        .join(final_reads.select(*TRACT_KEY, "event_id"), on=TRACT_KEY)
        .select(*KEY, "event_id")
    )
    ids = (
        pl.concat([from_exams, from_reads])
        .group_by(KEY)
        .agg(event_ids=pl.col("event_id").unique().sort())
    )
    return (
        conflicts.join(ids, on=KEY, how="left")
        .with_columns(pl.col("event_ids").fill_null([]))
        .select(*CONFLICT_SCHEMA.names())
    )


def with_identity(conflicts: pl.DataFrame, study: str) -> pl.DataFrame:
    """Add the stable ``conflict_id`` and the input ``fingerprint`` (sha256 based, so they
    survive library upgrades; conflicts are few, so a comprehension is fine here)."""
    keys = conflicts.select(KEY).rows()
    ids = [f"C-{digest(study, *key, length=12)}" for key in keys]
    prints = [digest(*ids_, length=16) for ids_ in conflicts["event_ids"].to_list()]
    return conflicts.with_columns(
        conflict_id=pl.Series(ids, dtype=pl.String), fingerprint=pl.Series(prints, dtype=pl.String)
    ).select("conflict_id", *CONFLICT_SCHEMA.names(), "fingerprint")
