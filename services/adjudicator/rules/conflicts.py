"""Conflict detection: every condition of PROTOCOL.md that needs the committee, with stable ids.

A conflict's id depends only on what it is about (study, type, subject, tract, visit or side),
so the same inputs give the same id; its fingerprint is the ids of the events behind it, so a
change of inputs after a decision is visible and reopens it.
"""

from __future__ import annotations

import polars as pl

from services.adjudicator.rules import TRACT_KEY
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


def _rows(
    frame: pl.LazyFrame, kind: str, about: pl.Expr, detail: pl.Expr, event_ids: pl.Expr
) -> pl.LazyFrame:
    return frame.select(
        type=pl.lit(kind),
        subject_id="subject_id",
        tract_id="tract_id",
        about=about,
        detail=detail,
        event_ids=event_ids.list.unique().list.sort(),
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
        .agg(event_ids=pl.col("event_id"), sources=pl.col("source").unique().sort())
    )
    return _rows(
        unmatched,
        UNMATCHED_TRACT,
        pl.lit("registry"),
        pl.lit("tract ")
        + pl.col("tract_id")
        + pl.lit(" is not in the registry of ")
        + pl.col("subject_id")
        + pl.lit(" (seen in ")
        + pl.col("sources").list.join(", ")
        + pl.lit(")"),
        pl.col("event_ids"),
    )


def outcome_conflicts(
    visits: pl.LazyFrame, tracts: pl.LazyFrame, primary_visit: str
) -> pl.LazyFrame:
    """The other four types, from the per-visit and per-tract frames of the rules.

    ``visits`` needs the clinical visit status with ``active``; ``tracts`` the per-tract frame
    with ``active``, ``completed`` and ``treated``.
    """
    inconsistent = _rows(
        visits.filter(pl.col("inconsistent") & pl.col("active")),
        INCONSISTENT_EXAM,
        pl.col("visit"),
        pl.col("inconsistency") + pl.lit(" at ") + pl.col("visit"),
        pl.col("event_ids"),
    )
    assessed = tracts.filter(pl.col("active") & pl.col("treated"))
    completed = assessed.filter(pl.col("completed"))
    fu6_closed = pl.col("fu6_closed").fill_null(False)
    missing_clinical = _rows(
        completed.filter(
            pl.col("clinical").is_null()
            & (~pl.col("fu6_present") | (fu6_closed & (pl.col("missing_visits").list.len() > 0)))
        ),
        MISSING_ASSESSMENT,
        pl.lit("clinical"),
        pl.lit("clinical assessment missing: ") + pl.col("clinical_reason"),
        pl.col("clinical_event_ids"),
    )
    missing_mri = _rows(
        completed.filter(pl.col("missing_reads")),
        MISSING_ASSESSMENT,
        pl.lit("mri"),
        pl.lit("MRI assessment missing: ") + pl.col("mri_basis"),
        pl.col("mri_event_ids"),
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
        pl.col("mri_event_ids"),
    )
    discordance = _rows(
        assessed.filter(pl.col("discordant")),
        CLINICAL_MRI_DISCORDANCE,
        pl.lit("primary"),
        pl.lit("clinical ")
        + pl.col("clinical")
        + pl.lit(f" ({primary_visit}: ")
        + pl.col("clinical_reason")
        + pl.lit("), MRI ")
        + pl.col("mri")
        + pl.lit(" (")
        + pl.col("mri_basis")
        + pl.lit(")"),
        pl.concat_list("clinical_event_ids", "mri_event_ids"),
    )
    return pl.concat([inconsistent, missing_clinical, missing_mri, disagreement, discordance])


def with_identity(conflicts: pl.DataFrame, study: str) -> pl.DataFrame:
    """Add the stable ``conflict_id`` and the input ``fingerprint`` (sha256 based, so they
    survive library upgrades; conflicts are few, so a comprehension is fine here)."""
    keys = conflicts.select("type", "subject_id", "tract_id", "about").rows()
    ids = [f"C-{digest(study, *key, length=12)}" for key in keys]
    prints = [digest(*ids_, length=16) for ids_ in conflicts["event_ids"].to_list()]
    return conflicts.with_columns(
        conflict_id=pl.Series(ids, dtype=pl.String), fingerprint=pl.Series(prints, dtype=pl.String)
    ).select("conflict_id", *CONFLICT_SCHEMA.names(), "fingerprint")
