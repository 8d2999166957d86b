"""Tiny hand-built evidence for rule tests: a trial in a few lines of Python."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

import schemas
from services.adjudicator.engine import Adjudication, adjudicate
from services.adjudicator.ruleset import RuleSet, load_ruleset
from services.adjudicator.state import Evidence, empty_records

DAY0 = date(2024, 1, 8)
VISIT_DAY = {"INJ1": 0, "INJ2": 60, "INJ3": 120, **{f"FU{k}": 120 + 30 * k for k in range(1, 7)}}
STAMP = datetime(2024, 1, 1, tzinfo=UTC)
_ids = itertools.count()


def rules(**changes: Any) -> RuleSet:
    """The project's rule set with some parameters changed, e.g. ``mri={"collection_dims": 1}``."""
    base = load_ruleset()
    updates = {
        k: replace(getattr(base, k), **v) if isinstance(v, dict) else v for k, v in changes.items()
    }
    return replace(base, **updates)


def _frame(kind: str, rows: list[dict[str, Any]]) -> pl.LazyFrame:
    if not rows:
        return empty_records(kind)
    schema = {"offset": pl.Int64(), "event_id": pl.String()} | dict(
        schemas.polars_schema(schemas.contract(kind))
    )
    return pl.LazyFrame([{k: row.get(k) for k in schema} for row in rows], schema=schema)


def _meta(id_field: str, version_field: str, prefix: str, kw: dict[str, Any]) -> dict[str, Any]:
    n = next(_ids)
    return {
        id_field: kw.pop("record_id", f"{prefix}-{n}"),
        version_field: kw.pop("version", 1),
        "event_id": kw.pop("event_id", f"ev-{n}"),
        "offset": kw.pop("offset", n),
        "deleted": kw.pop("deleted", False),
        "change_reason": kw.pop("change_reason", None),
    }


def subject(subject_id: str, status: str = "COMPLETED", **kw: Any) -> dict[str, Any]:
    return {
        **_meta("record_id", "record_version", "SUBJ", kw),
        "subject_id": subject_id,
        "site_id": "SITE1",
        "enrolled_on": DAY0 - timedelta(days=21),
        "status": status,
        "entered_at": STAMP,
        "entered_by": "crc",
        **kw,
    }


def tract(subject_id: str, tract_id: str = "T1", treated: bool = True, **kw: Any) -> dict[str, Any]:
    return {
        **_meta("record_id", "record_version", "TR", kw),
        "subject_id": subject_id,
        "tract_id": tract_id,
        "parks_type": "TRANSSPHINCTERIC",
        "external_opening_clock": 6,
        "treated": treated,
        "draining_at_baseline": True,
        "entered_at": STAMP,
        "entered_by": "crc",
        **kw,
    }


def exam(
    subject_id: str,
    tract_id: str,
    visit: str,
    opening: str = "CLOSED",
    drains: bool = False,
    grade: int | None = 0,
    **kw: Any,
) -> dict[str, Any]:
    return {
        **_meta("record_id", "record_version", "EX", kw),
        "subject_id": subject_id,
        "tract_id": tract_id,
        "visit": visit,
        "exam_date": kw.pop("exam_date", DAY0 + timedelta(days=VISIT_DAY[visit])),
        "examiner_id": "EXAM-1",
        "external_opening": opening,
        "drains_on_compression": drains,
        "discharge_grade": grade,
        "entered_at": STAMP,
        "entered_by": "crc",
        **kw,
    }


def injection(
    subject_id: str, tract_id: str = "T1", visit: str = "INJ1", **kw: Any
) -> dict[str, Any]:
    return {
        **_meta("record_id", "record_version", "INJ", kw),
        "subject_id": subject_id,
        "tract_id": tract_id,
        "visit": visit,
        "administered_on": kw.pop("administered_on", DAY0 + timedelta(days=VISIT_DAY[visit])),
        "volume_ml": 5.0,
        "entered_at": STAMP,
        "entered_by": "crc",
        **kw,
    }


def read(
    subject_id: str,
    tract_id: str,
    role: str,
    t2: bool = False,
    collection: list[float] | None = None,
    quality: str = "ADEQUATE",
    timepoint: str = "MRI_FINAL",
    **kw: Any,
) -> dict[str, Any]:
    return {
        **_meta("read_id", "read_version", "RD", kw),
        "subject_id": subject_id,
        "tract_id": tract_id,
        "timepoint": timepoint,
        "scan_date": kw.pop(
            "scan_date", DAY0 + timedelta(days=-14 if timepoint == "MRI_BL" else 300)
        ),
        "reader_id": {"R1": "RAD-A", "R2": "RAD-B", "ADJ": "RAD-C"}[role],
        "reader_role": role,
        "image_quality": quality,
        "t2_hyperintense": t2,
        "collection_mm": collection,
        "read_at": STAMP + timedelta(days=400, minutes=next(_ids)),
        **kw,
    }


def closed_exams(
    subject_id: str, tract_id: str = "T1", baseline_grade: int = 2
) -> list[dict[str, Any]]:
    """INJ1 draining, closed from FU4 on."""
    rows = [exam(subject_id, tract_id, "INJ1", "OPEN", True, baseline_grade)]
    rows += [exam(subject_id, tract_id, v) for v in ("FU4", "FU5", "FU6")]
    return rows


def healed_reads(subject_id: str, tract_id: str = "T1") -> list[dict[str, Any]]:
    return [read(subject_id, tract_id, "R1"), read(subject_id, tract_id, "R2")]


def evidence(
    subjects: list[dict] = (),  # type: ignore[assignment]
    tracts: list[dict] = (),  # type: ignore[assignment]
    exams: list[dict] = (),  # type: ignore[assignment]
    reads: list[dict] = (),  # type: ignore[assignment]
    pathology: list[dict] = (),  # type: ignore[assignment]
    injections: list[dict] = (),  # type: ignore[assignment]
) -> Evidence:
    records = {
        "subject": _frame("subject", list(subjects)),
        "tract": _frame("tract", list(tracts)),
        "injection": _frame("injection", list(injections)),
        "clinical_exam": _frame("clinical_exam", list(exams)),
        "mri_read": _frame("mri_read", list(reads)),
        "pathology_report": _frame("pathology_report", list(pathology)),
    }
    return Evidence.from_records(records).collect()


def run(ev: Evidence, rule_set: RuleSet | None = None, decisions: list[dict] = ()) -> Adjudication:  # type: ignore[assignment]
    return adjudicate(
        "T",
        ev,
        rule_set or load_ruleset(),
        _frame("committee_decision", list(decisions)),
        _frame("conflict_change", []),
    )


def decision(
    conflict: dict[str, Any], status: str, decided_at: datetime, **kw: Any
) -> dict[str, Any]:
    """A committee decision on ``conflict`` (a row of ``Adjudication.conflicts``), as logged."""
    n = next(_ids)
    return {
        "offset": kw.pop("offset", n),
        "event_id": f"ev-{n}",
        "decision_id": f"D-{n}",
        "conflict_id": conflict["conflict_id"],
        "conflict_type": conflict["type"],
        "subject_id": conflict["subject_id"],
        "tract_id": conflict["tract_id"],
        "status": status,
        "maps_to": kw.pop("maps_to", None),
        "rationale": "reviewed",
        "members": ["dr.a", "dr.b"],
        "recorded_by": "dr.a",
        "decided_at": decided_at,
        "fingerprint": conflict["fingerprint"],
        **kw,
    }


def conflict_row(result: Adjudication, type_: str, subject_id: str, tract_id: str = "T1") -> dict:
    rows = result.conflicts.filter(
        (pl.col("type") == type_)
        & (pl.col("subject_id") == subject_id)
        & (pl.col("tract_id") == tract_id)
    )
    assert rows.height == 1, f"no single {type_} conflict on {subject_id}/{tract_id}"
    return rows.row(0, named=True)


def outcome(
    result: Adjudication, subject_id: str, tract_id: str = "T1", column: str = "outcome"
) -> Any:
    row = result.tracts.filter(
        (pl.col("subject_id") == subject_id) & (pl.col("tract_id") == tract_id)
    )
    assert row.height == 1, f"no single tract {subject_id}/{tract_id}"
    return row[column][0]


def conflict_types(result: Adjudication, status: str | None = "OPEN") -> set[tuple[str, str, str]]:
    frame = (
        result.conflicts if status is None else result.conflicts.filter(pl.col("status") == status)
    )
    return set(frame.select("type", "subject_id", "tract_id").iter_rows())
