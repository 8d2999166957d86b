"""Which committee member reviews a conflict first: the chair's assignments, as events.

The latest ``assignment`` event of a conflict is the assignment in force (an empty assignee
takes it back). Assigning is workflow, not adjudication: it changes no outcome and no conflict,
and any member may still vote on any conflict. Pure functions over the event frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import polars as pl

from services.events import Event, make_event, utc_now

NOTE_LIMIT = 2000


def in_force(events: pl.DataFrame) -> pl.DataFrame:
    """Per conflict, the assignment in force: conflict_id, assignee (null when taken back),
    assigned_by, at."""
    if events.is_empty():
        return pl.DataFrame(
            schema={
                "conflict_id": pl.String(),
                "assignee": pl.String(),
                "assigned_by": pl.String(),
                "assigned_at": pl.Datetime("us", "UTC"),
            }
        )
    return (
        events.sort("at", "offset")
        .group_by("conflict_id")
        .last()
        .select(
            "conflict_id",
            assignee=pl.col("assignee").replace("", None),
            assigned_by="assigned_by",
            assigned_at="at",
        )
    )


def assignment_events(
    study: str,
    conflicts: Iterable[dict[str, Any]],
    assignee: str | None,
    by: str,
    note: str | None = None,
) -> list[Event]:
    """One event per conflict (rows with conflict_id, subject_id, tract_id)."""
    at = utc_now()
    return [
        make_event(
            "assignment",
            study,
            c["subject_id"],
            {
                "conflict_id": c["conflict_id"],
                "subject_id": c["subject_id"],
                "tract_id": c["tract_id"],
                "assignee": assignee or "",
                "assigned_by": by,
                "note": (note or "").strip()[:NOTE_LIMIT] or None,
                "at": at,
            },
        )
        for c in conflicts
    ]


def assignment_audit(events: pl.DataFrame) -> pl.DataFrame:
    """The audit trail's rows for ``assignment`` events (``services.audit.AUDIT_SCHEMA``)."""
    return events.select(
        at=pl.col("at").dt.to_string("%Y-%m-%dT%H:%M:%SZ"),
        kind=pl.lit("assignment"),
        action=pl.when(pl.col("assignee").fill_null("") == "")
        .then(pl.lit("UNASSIGNED"))
        .otherwise(pl.lit("ASSIGNED")),
        who="assigned_by",
        subject_id="subject_id",
        tract_id="tract_id",
        what=pl.format("conflict {}", "conflict_id"),
        why="note",
        old_value=pl.lit(None, pl.String),
        new_value="assignee",
        event_id="event_id",
        offset="offset",
    )
