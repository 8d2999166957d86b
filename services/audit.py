"""The audit trail: who, when, what, why, old and new value, for every change in a study.

It is a view over the log, which is append-only: corrections, deletions, late versions,
dead letters, committee decisions (and what they superseded), conflicts raised and cleared,
and locks. Nothing is ever overwritten, so the trail cannot disagree with the data.
"""

from __future__ import annotations

import polars as pl

import schemas
from services.adjudicator.state import EVIDENCE_KINDS
from services.assignments import assignment_audit
from services.events import canonical_json
from services.queries import query_audit
from services.state.records import Cut, Records, records_at

AUDIT_SCHEMA = pl.Schema(
    {
        "at": pl.String(),
        "kind": pl.String(),
        "action": pl.String(),
        "who": pl.String(),
        "subject_id": pl.String(),
        "tract_id": pl.String(),
        "what": pl.String(),
        "why": pl.String(),
        "old_value": pl.String(),
        "new_value": pl.String(),
        "event_id": pl.String(),
        "offset": pl.Int64(),
    }
)
WHO = {"mri_read": "reader_id", "pathology_report": "pathologist_id"}
# Access events not tied to one study (sign-ins, user changes) are filed under this study id
# and shown in every study's trail.
PLATFORM_WIDE = "*"
WHEN = {"mri_read": "read_at", "pathology_report": "reported_at"}
_SKIP = {
    "offset",
    "event_id",
    "entered_at",
    "read_at",
    "reported_at",
    "change_reason",
    "deleted",
    "record_version",
    "read_version",
    "report_version",
}


def _ts(column: str) -> pl.Expr:
    return pl.col(column).dt.to_string("%Y-%m-%dT%H:%M:%SZ")


def _evidence(kind: str, records: pl.DataFrame) -> pl.DataFrame:
    contract = schemas.contract(kind)
    id_, version = contract.id_field, contract.version_field
    ordered = records.sort("offset")
    # Old and new values, and late versions, exist only for records sent more than once: only
    # those (few) are walked and windowed; the rest of the study costs a filter.
    repeated = ordered.filter(pl.col(id_).is_duplicated())
    highest = repeated.select(
        "event_id", _highest_before=pl.col(version).cum_max().shift(1).over(id_)
    )
    ordered = ordered.join(highest, on="event_id", how="left", maintain_order="left")
    rows = []
    previous: dict[str, dict] = {}
    versioned = repeated.sort(id_, version)
    for row in versioned.iter_rows(named=True):
        before = previous.get(row[id_])
        if before is not None:
            changed = {
                k for k in row if k not in _SKIP and not k.startswith("_") and row[k] != before[k]
            }
            rows.append(
                (
                    row["event_id"],
                    canonical_json({k: before[k] for k in sorted(changed)}),
                    canonical_json({k: row[k] for k in sorted(changed)}),
                )
            )
        previous[row[id_]] = row
    diffs = pl.DataFrame(
        rows,
        schema={"event_id": pl.String(), "old_value": pl.String(), "new_value": pl.String()},
        orient="row",
    )
    late = pl.col("_highest_before").is_not_null() & (pl.col(version) < pl.col("_highest_before"))
    return ordered.join(diffs, on="event_id", how="left", maintain_order="left").select(
        at=_ts(WHEN.get(kind, "entered_at")),
        kind=pl.lit(kind),
        action=pl.when(late)
        .then(pl.lit("LATE_VERSION_KEPT"))
        .when(pl.col("deleted").fill_null(False))
        .then(pl.lit("DELETED"))
        .when(pl.col(version) > 1)
        .then(pl.lit("CORRECTED"))
        .otherwise(pl.lit("CREATED")),
        who=pl.col(WHO.get(kind, "entered_by")),
        subject_id="subject_id",
        tract_id=pl.col("tract_id") if "tract_id" in records.columns else pl.lit(None, pl.String),
        what=pl.lit(f"{kind} ") + pl.col(id_) + pl.lit(" v") + pl.col(version).cast(pl.String),
        why="change_reason",
        old_value="old_value",
        new_value="new_value",
        event_id="event_id",
        offset="offset",
    )


def audit_trail(source: Records, study: str, cut: Cut | None = None) -> pl.DataFrame:
    """Every change of ``study`` in time order (up to ``cut`` when given)."""

    def read(kind: str, of: str = study) -> pl.DataFrame:
        return records_at(source, kind, of, cut).collect()

    parts = [_evidence(kind, read(kind)) for kind in EVIDENCE_KINDS]
    decisions = read("committee_decision")
    parts.append(
        decisions.select(
            at=_ts("decided_at"),
            kind=pl.lit("committee_decision"),
            action=pl.when(pl.col("supersedes").is_not_null())
            .then(pl.lit("DECISION_SUPERSEDES"))
            .otherwise(pl.lit("DECISION")),
            who=pl.col("recorded_by") + pl.lit(" for ") + pl.col("members").list.join(", "),
            subject_id="subject_id",
            tract_id="tract_id",
            what=pl.col("conflict_type")
            + pl.lit(" ")
            + pl.col("conflict_id")
            + pl.lit(" ")
            + pl.col("decision_id"),
            why="rationale",
            old_value=pl.coalesce(
                pl.lit("superseded ") + pl.col("supersedes"),
                pl.lit("rule: ") + pl.col("rule_outcome"),
            ),
            new_value=pl.col("status")
            + pl.coalesce(pl.lit(" -> ") + pl.col("maps_to"), pl.lit("")),
            event_id="event_id",
            offset="offset",
        )
    )
    changes = read("conflict_change")
    parts.append(
        changes.select(
            at=_ts("at"),
            kind=pl.lit("conflict"),
            action="condition",
            who=pl.lit("adjudicator"),
            subject_id="subject_id",
            tract_id="tract_id",
            what=pl.col("conflict_type") + pl.lit(" ") + pl.col("conflict_id"),
            why="detail",
            old_value=pl.lit(None, pl.String),
            new_value="fingerprint",
            event_id="event_id",
            offset="offset",
        )
    )
    rejected = read("rejected_row")
    runs = read("ingest_run").select("ingest_run", "finished_at")
    parts.append(
        rejected.join(runs, on="ingest_run", how="left").select(
            at=_ts("finished_at"),
            kind=pl.lit("rejected_row"),
            action=pl.lit("REJECTED"),
            who=pl.lit("ingest ") + pl.col("ingest_run"),
            subject_id=pl.col("raw").str.json_path_match("$.subject_id"),
            tract_id=pl.col("raw").str.json_path_match("$.tract_id"),
            what=pl.col("file") + pl.lit(" line ") + pl.col("line").cast(pl.String),
            why="reason",
            old_value=pl.lit(None, pl.String),
            new_value="raw",
            event_id="event_id",
            offset="offset",
        )
    )
    locks = read("lock").filter(pl.col("action") != "CLAIM")  # a reservation, not a change
    parts.append(
        locks.select(
            at=_ts("at"),
            kind=pl.lit("lock"),
            action="action",
            who=pl.col("requested_by")
            + pl.coalesce(
                pl.lit(" approved by ") + pl.col("approvers").list.join(", "), pl.lit("")
            ),
            subject_id=pl.lit(None, pl.String),
            tract_id=pl.lit(None, pl.String),
            what=pl.col("lock_id") + pl.lit(" (") + pl.col("level") + pl.lit(")"),
            why="reason",
            old_value=pl.lit(None, pl.String),
            new_value="location",
            event_id="event_id",
            offset="offset",
        )
    )
    parts += [query_audit(read("site_query")), assignment_audit(read("assignment"))]
    access = pl.concat([read("access", s) for s in (study, PLATFORM_WIDE)])
    parts.append(
        access.select(
            at=_ts("at"),
            kind=pl.lit("access"),
            action=pl.col("action") + pl.lit(" ") + pl.col("outcome"),
            who=pl.col("who")
            + pl.coalesce(pl.lit(" (") + pl.col("role") + pl.lit(")"), pl.lit("")),
            subject_id="subject_id",
            tract_id="tract_id",
            what=pl.coalesce("conflict_id", "path"),
            why="detail",
            old_value=pl.lit(None, pl.String),
            new_value="outcome",
            event_id="event_id",
            offset="offset",
        )
    )
    return pl.concat([p.cast(AUDIT_SCHEMA) for p in parts]).sort("at", "kind", "offset")
