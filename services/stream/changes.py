"""Outcome changes: which tract outcomes and patient categories differ from what was published.

Pure: the adjudication of the touched subjects and the last published state in, the
``outcome_change`` events out. Each event's id comes from (study, level, subject, tract, seq,
state), so recomputing after a crash yields the same ids, and an unchanged outcome yields
no event at all.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import polars as pl

from services.adjudicator.engine import Adjudication, used_event_ids
from services.events import Event, canonical_json, digest

TRACT_FIELDS = (
    "treated",
    "subject_status",
    "clinical",
    "clinical_reason",
    "mri",
    "mri_basis",
    "discharge_improved",
    "post_lock",
    "rule_outcome",
    "admire_outcome",
    "clinical_only_outcome",
    "outcome",
    "decided_by",
    "decision_id",
    "rule_set",
    "rule_set_version",
)
PATIENT_FIELDS = (
    "subject_status",
    "category",
    "n_treated",
    "n_closed",
    "n_pending",
    "any_discharge_improved",
    "admire_category",
    "clinical_only_category",
    "response_50",
    "rule_set",
    "rule_set_version",
)
RETIRED = "RETIRED"

Key = tuple[str, str, str, str]  # study, level, subject_id, tract_id ("" for a patient)


@dataclass(frozen=True)
class Last:
    state_hash: str
    seq: int
    outcome: str


def load_published(records: pl.DataFrame) -> dict[Key, Last]:
    """The last published state per tract and patient, from ``outcome_change`` records (the
    log's typed columns, with ``study`` and ``offset``)."""
    if records.is_empty():
        return {}
    rows = (
        records.sort("offset")
        .with_columns(pl.col("tract_id").fill_null(""))
        .group_by("study", "level", "subject_id", "tract_id")
        .agg(pl.col("state_hash", "seq", "outcome").last())
    )
    return {
        (r["study"], r["level"], r["subject_id"], r["tract_id"]): Last(
            r["state_hash"], r["seq"], r["outcome"]
        )
        for r in rows.iter_rows(named=True)
    }


def outcome_changes(
    study: str,
    result: Adjudication,
    subjects: Collection[str] | None,
    published: dict[Key, Last],
    at: str,
) -> list[Event]:
    """Events for every tract or patient of ``subjects`` (all when None) whose state differs
    from ``published``, and RETIRED for those that disappeared."""
    events: list[Event] = []
    seen: set[Key] = set()
    rule_set = (result.rule_set, result.rule_set_version)
    for row in result.tracts.iter_rows(named=True):
        key = (study, "TRACT", row["subject_id"], row["tract_id"])
        seen.add(key)
        state = _state(row, TRACT_FIELDS) | {"event_ids": used_event_ids(row)}
        event = _change(key, row["outcome"], row, state, published, at, rule_set)
        if event:
            events.append(event)
    for row in result.patients.iter_rows(named=True):
        key = (study, "PATIENT", row["subject_id"], "")
        seen.add(key)
        event = _change(
            key, row["category"], row, _state(row, PATIENT_FIELDS), published, at, rule_set
        )
        if event:
            events.append(event)
    wanted = None if subjects is None else set(subjects)
    for key, last in published.items():
        if key[0] != study or key in seen or last.outcome == RETIRED:
            continue
        if wanted is None or key[2] in wanted:
            events.append(_change(key, RETIRED, {}, {}, published, at, rule_set))  # type: ignore[arg-type]
    return events


def remember(published: dict[Key, Last], events: list[Event]) -> None:
    for e in events:
        p = e.payload
        key = (e.study, p["level"], p["subject_id"], p["tract_id"] or "")
        published[key] = Last(p["state_hash"], p["seq"], p["outcome"])


def _state(row: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {f: row.get(f) for f in fields}


def _change(
    key: Key,
    outcome: str | None,
    row: dict[str, Any],
    state: dict[str, Any],
    published: dict[Key, Last],
    at: str,
    rule_set: tuple[str, int],
) -> Event | None:
    study, level, subject_id, tract_id = key
    detail = canonical_json(state)
    state_hash = digest(detail if state else RETIRED)
    last = published.get(key)
    if last is not None and last.state_hash == state_hash:
        return None
    seq = 0 if last is None else last.seq + 1
    payload = {
        "level": level,
        "subject_id": subject_id,
        "tract_id": tract_id or None,
        "outcome": outcome or "PENDING",
        "decided_by": row.get("decided_by"),
        "rule_outcome": row.get("rule_outcome"),
        "decision_id": row.get("decision_id"),
        "detail": detail,
        "event_ids": state.get("event_ids", []) if level == "TRACT" else None,
        "rule_set": rule_set[0],
        "rule_set_version": int(rule_set[1]),
        "state_hash": state_hash,
        "seq": seq,
        "at": at,
    }
    event_id = digest(study, "outcome_change", level, subject_id, tract_id, seq, state_hash)
    return Event("outcome_change", study, subject_id, event_id, payload)
