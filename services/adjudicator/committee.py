"""The adjudication committee: decisions on conflicts, their validity, and what they change.

A decision applies while its conflict holds with the inputs the committee saw (same
fingerprint). A later decision supersedes an earlier one; both stay in the log. When the
inputs change, the conflict reopens; when the condition no longer holds, it is RESOLVED.

Decisions come from signed votes (:mod:`services.adjudicator.votes`): each member signs their
own, and a decision forms when the quorum's votes agree. ``committee_decision`` events written
before e-signatures (one person recording for the members) stay readable and in force until a
signed decision supersedes them; nothing writes them any more.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from services.adjudicator.errors import DecisionRefusedError
from services.adjudicator.rules.conflicts import UNMATCHED_TRACT

OUTCOME_STATUSES = ("CLOSED", "NOT_CLOSED", "NOT_EVALUABLE")
MAPPING_STATUSES = ("MAPPED", "NEW_TRACT")
OPEN, DECIDED, RESOLVED = "OPEN", "DECIDED", "RESOLVED"

DECISION_COLUMNS = (
    "decision_id",
    "conflict_id",
    "status",
    "maps_to",
    "rationale",
    "members",
    "recorded_by",
    "decided_at",
    "fingerprint",
)


def latest_decisions(decisions: pl.LazyFrame) -> pl.LazyFrame:
    """The decision in force per conflict: the latest by time, then by log position."""
    return decisions.sort("decided_at", "offset").group_by("conflict_id").last()


def conflict_status(
    conflicts: pl.LazyFrame, decisions: pl.LazyFrame, register: pl.LazyFrame
) -> pl.LazyFrame:
    """Every conflict that holds now or was ever raised or decided, with its status.

    ``conflicts``: what holds now (conflict_id, ..., fingerprint). ``register``: the
    adjudicator's past conflict_change events. OPEN (holds, no valid decision), DECIDED (holds,
    decided on these inputs) or RESOLVED (no longer holds).
    """
    latest = latest_decisions(decisions).select(
        "conflict_id",
        pl.col("decision_id"),
        pl.col("status").alias("decision_status"),
        "maps_to",
        "rationale",
        "members",
        "decided_at",
        pl.col("offset").alias("decision_offset"),
        pl.col("fingerprint").alias("decision_fingerprint"),
        pl.col("conflict_type").alias("_d_type"),
        pl.col("subject_id").alias("_d_subject"),
        pl.col("tract_id").alias("_d_tract"),
    )
    history = register.group_by("conflict_id").agg(
        first_raised_at=pl.col("at").min(),
        _r_type=pl.col("conflict_type").first(),
        _r_subject=pl.col("subject_id").first(),
        _r_tract=pl.col("tract_id").first(),
        _r_detail=pl.col("detail").drop_nulls().last(),
    )
    holding = conflicts.with_columns(holds=pl.lit(True))
    everything = (
        holding.join(history, on="conflict_id", how="full", coalesce=True)
        .join(latest, on="conflict_id", how="full", coalesce=True)
        .with_columns(
            type=pl.coalesce("type", "_r_type", "_d_type"),
            subject_id=pl.coalesce("subject_id", "_r_subject", "_d_subject"),
            tract_id=pl.coalesce("tract_id", "_r_tract", "_d_tract"),
            detail=pl.coalesce("detail", "_r_detail"),
            holds=pl.col("holds").fill_null(False),
        )
    )
    fresh = pl.col("decision_fingerprint") == pl.col("fingerprint")
    decided = pl.col("decision_id").is_not_null()
    return everything.with_columns(
        status=pl.when(~pl.col("holds"))
        .then(pl.lit(RESOLVED))
        .when(decided & fresh)
        .then(pl.lit(DECIDED))
        .otherwise(pl.lit(OPEN)),
        reopened_reason=pl.when(pl.col("holds") & decided & ~fresh).then(
            pl.lit("reopened: the inputs changed after decision ")
            + pl.col("decision_id")
            + pl.lit(" of ")
            + pl.col("decided_at").dt.to_string("%Y-%m-%dT%H:%M:%SZ")
        ),
    ).select(pl.exclude("^_.*$"))


def tract_overrides(statuses: pl.LazyFrame) -> pl.LazyFrame:
    """Per tract, the committee's final status from its latest decision in force: when
    several conflicts of one tract are decided, the latest decision (by ``decided_at``, then
    log position) is the committee's last word on the tract."""
    return (
        statuses.filter(
            (pl.col("status") == DECIDED) & pl.col("decision_status").is_in(OUTCOME_STATUSES)
        )
        .sort("decided_at", "decision_offset", maintain_order=True)
        .group_by("subject_id", "tract_id")
        .agg(
            committee_outcome=pl.col("decision_status").last(),
            decision_id=pl.col("decision_id").last(),
            override_conflict_type=pl.col("type").last(),
        )
    )


def tract_mappings(statuses: pl.LazyFrame) -> pl.LazyFrame:
    """UNMATCHED_TRACT decisions in force: (subject_id, tract_id) -> maps_to, or NEW_TRACT."""
    return statuses.filter(
        (pl.col("status") == DECIDED)
        & (pl.col("type") == UNMATCHED_TRACT)
        & pl.col("decision_status").is_in(MAPPING_STATUSES)
    ).select("subject_id", "tract_id", "decision_status", "maps_to", "decision_id")


def check_choice(
    conflict: dict,
    status: str,
    maps_to: str | None,
    rationale: str,
    registry_tracts: Sequence[str],
) -> tuple[str, str | None, str]:
    """A committee member's choice on a conflict checked against the protocol: (status,
    maps_to, rationale) cleaned up, or :class:`DecisionRefusedError` with the fix."""
    cid = conflict["conflict_id"]
    if conflict["status"] == RESOLVED:
        raise DecisionRefusedError(
            f"conflict {cid} no longer holds (RESOLVED); there is nothing to decide"
        )
    maps_to = (maps_to or "").strip() or None
    if maps_to:
        status = status or "MAPPED"
    allowed = MAPPING_STATUSES if conflict["type"] == UNMATCHED_TRACT else OUTCOME_STATUSES
    if status not in allowed:
        raise DecisionRefusedError(
            f"{conflict['type']} conflict {cid}: status must be one of {', '.join(allowed)}"
            + (" (MAPPED needs --maps-to TRACT_ID)" if conflict["type"] == UNMATCHED_TRACT else "")
            + f", got {status!r}"
        )
    if status == "MAPPED" and maps_to not in registry_tracts:
        raise DecisionRefusedError(
            f"conflict {cid}: --maps-to must name a registry tract of {conflict['subject_id']} "
            f"({', '.join(registry_tracts) or 'none registered'}), got {maps_to!r}"
        )
    if status != "MAPPED" and maps_to:
        raise DecisionRefusedError(f"conflict {cid}: --maps-to goes with status MAPPED only")
    if not rationale or not rationale.strip():
        raise DecisionRefusedError(
            f"conflict {cid}: a rationale is required; say why the committee decided so"
        )
    return status, maps_to, rationale.strip()
