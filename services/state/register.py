"""The conflict register: which conflicts were raised or cleared since the register last
spoke, as ``conflict_change`` events (the audit trail's account of conflicts).

Pure and columnar: the conflicts that hold now (for some subjects) and the register's history
of those subjects in, a batch of new events out (one frame: a bulk load raising a conflict on
every tract costs what its columns cost), plus the conflicts with ``first_raised_at`` filled in
for the ones raised just now (so the state need not be recomputed after recording them).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import polars as pl

from services.events import event_id_expr
from services.log.segment import Batch

REGISTER_COLUMNS = ("conflict_id", "type", "subject_id", "tract_id", "fingerprint", "detail")


def register_changes(
    study: str,
    conflicts: pl.DataFrame,
    register: pl.DataFrame,
    at: str,
    subjects: Collection[str] | None = None,
) -> tuple[Batch, pl.DataFrame]:
    """The ``conflict_change`` batch for ``study`` and the conflicts with their first raise time.

    ``conflicts``: the adjudication's conflicts (any status); ``register``: the study's
    ``conflict_change`` records (of ``subjects`` when only those were recomputed). Event ids
    are those :func:`services.events.make_event` gives (study, kind, conflict id, change number,
    condition), so recording the same change again appends nothing.
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
        holding = holding.filter(pl.col("subject_id").is_in(wanted.implode()))
        last = last.filter(pl.col("subject_id").is_in(wanted.implode()))
    joined = holding.join(last, on="conflict_id", how="full", coalesce=True, suffix="_was")
    holds = pl.col("type").is_not_null()
    raised = holds & (
        (pl.col("condition") != "RAISED").fill_null(True)
        | (pl.col("fingerprint") != pl.col("fingerprint_was")).fill_null(True)
    )
    cleared = ~holds & (pl.col("condition") == "RAISED")
    moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    condition = pl.when(holds).then(pl.lit("RAISED")).otherwise(pl.lit("CLEARED"))
    changes = joined.filter(raised | cleared).select(
        "conflict_id",
        conflict_type=pl.coalesce("type", "conflict_type"),
        subject_id=pl.coalesce("subject_id", "subject_id_was"),
        tract_id=pl.coalesce("tract_id", "tract_id_was"),
        condition=condition,
        fingerprint=pl.when(holds).then(pl.col("fingerprint")),
        detail=pl.when(holds).then(pl.col("detail")),
        at=pl.lit(moment, dtype=pl.Datetime("us", "UTC")),
        event_id=event_id_expr(
            study,
            "conflict_change",
            pl.col("conflict_id"),
            pl.col("changes").fill_null(0),
            condition,
        ),
    )
    patched = conflicts.with_columns(
        first_raised_at=pl.when(
            pl.col("first_raised_at").is_null() & (pl.col("status") != "RESOLVED")
        )
        .then(pl.lit(moment, dtype=conflicts.schema["first_raised_at"]))
        .otherwise(pl.col("first_raised_at"))
    )
    return Batch("conflict_change", study, changes), patched
