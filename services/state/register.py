"""The conflict register: which conflicts were raised or cleared since the register last
spoke, as ``conflict_change`` events (the audit trail's account of conflicts).

Pure: the conflicts that hold now (for some subjects) and the register's history of those
subjects in, the new events out, plus the conflicts with ``first_raised_at`` filled in for
the ones raised just now (so the state need not be recomputed after recording them).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import polars as pl

from services.events import Event, make_event

REGISTER_COLUMNS = ("conflict_id", "type", "subject_id", "tract_id", "fingerprint", "detail")


def register_changes(
    study: str,
    conflicts: pl.DataFrame,
    register: pl.DataFrame,
    at: str,
    subjects: Collection[str] | None = None,
) -> tuple[list[Event], pl.DataFrame]:
    """``conflict_change`` events for ``study`` and the conflicts with their first raise time.

    ``conflicts``: the adjudication's conflicts (any status); ``register``: the study's
    ``conflict_change`` records (of ``subjects`` when only those were recomputed).
    """
    last = (
        register.sort("offset")
        .group_by("conflict_id")
        .agg(
            pl.col("condition", "fingerprint", "conflict_type", "subject_id", "tract_id").last(),
            changes=pl.len(),
        )
    )
    holding = conflicts.filter(pl.col("status") != "RESOLVED").select(REGISTER_COLUMNS)
    if subjects is not None:
        wanted = pl.Series(list(subjects), dtype=pl.String)
        holding = holding.filter(pl.col("subject_id").is_in(wanted))
        last = last.filter(pl.col("subject_id").is_in(wanted))
    joined = holding.join(last, on="conflict_id", how="full", coalesce=True, suffix="_was")
    holds = pl.col("type").is_not_null()
    raised = holds & (
        (pl.col("condition") != "RAISED").fill_null(True)
        | (pl.col("fingerprint") != pl.col("fingerprint_was")).fill_null(True)
    )
    cleared = ~holds & (pl.col("condition") == "RAISED")
    changes = joined.filter(raised | cleared).with_columns(
        condition=pl.when(holds).then(pl.lit("RAISED")).otherwise(pl.lit("CLEARED")),
        conflict_type=pl.coalesce("type", "conflict_type"),
        subject=pl.coalesce("subject_id", "subject_id_was"),
        tract=pl.coalesce("tract_id", "tract_id_was"),
        seq=pl.col("changes").fill_null(0),
    )
    events = [
        make_event(
            "conflict_change",
            study,
            row["subject"],
            {
                "conflict_id": row["conflict_id"],
                "conflict_type": row["conflict_type"],
                "subject_id": row["subject"],
                "tract_id": row["tract"],
                "condition": row["condition"],
                "fingerprint": row["fingerprint"] if row["condition"] == "RAISED" else None,
                "detail": row["detail"] if row["condition"] == "RAISED" else None,
                "at": at,
            },
            row["conflict_id"],
            row["seq"],
            row["condition"],
        )
        for row in changes.iter_rows(named=True)
    ]
    first_raised = datetime.fromisoformat(at.replace("Z", "+00:00"))
    patched = conflicts.with_columns(
        first_raised_at=pl.when(
            pl.col("first_raised_at").is_null() & (pl.col("status") != "RESOLVED")
        )
        .then(pl.lit(first_raised, dtype=conflicts.schema["first_raised_at"]))
        .otherwise(pl.col("first_raised_at"))
    )
    return events, patched
