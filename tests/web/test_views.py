"""The pure parts of the pages: ages and overdue flags, queue filters, audit filters, the
evidence views and the swimmer plot, on small hand-built frames (the blinding policy has its
own tests in test_visibility.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from services.adjudicator.ruleset import load_ruleset
from services.web import evidence as ev
from services.web.errors import AccessRefusedError
from services.web.plots import STATUS_FILL, swimmer_svg
from services.web.views import (
    AuditFilters,
    QueueFilters,
    audit_csv,
    conflict_queue,
    filter_audit,
    readiness,
    summarize,
)

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
RULES = load_ruleset()


def conflict(cid: str, kind: str, subject: str, status: str = "OPEN", days: int | None = 1):
    return {
        "conflict_id": cid,
        "type": kind,
        "subject_id": subject,
        "tract_id": "T1",
        "about": "mri",
        "detail": "d",
        "status": status,
        "first_raised_at": None if days is None else NOW - timedelta(days=days, hours=1),
        "reopened_reason": None,
        "fingerprint": "f",
        "decision_id": None,
        "decision_status": None,
    }


CONFLICTS = pl.DataFrame(
    [
        conflict("C-1", "READER_DISAGREEMENT", "S01", days=20),
        conflict("C-2", "READER_DISAGREEMENT", "S02", days=3),
        conflict("C-3", "UNMATCHED_TRACT", "S02", status="DECIDED", days=30),
        conflict("C-4", "MISSING_ASSESSMENT", "S03", days=None),
    ]
)


def test_age_counts_whole_days_and_only_open_conflicts_are_overdue() -> None:
    rows = {r["conflict_id"]: summarize("X", r, NOW, 14) for r in CONFLICTS.iter_rows(named=True)}
    assert (rows["C-1"].age_days, rows["C-1"].overdue) == (20, True)
    assert (rows["C-2"].age_days, rows["C-2"].overdue) == (3, False)
    assert (rows["C-3"].age_days, rows["C-3"].overdue) == (30, False)  # decided: not overdue
    assert (rows["C-4"].age_days, rows["C-4"].overdue, rows["C-4"].raised_at) == (None, False, "—")
    assert summarize("X", CONFLICTS.row(1, named=True), NOW, 3).overdue  # threshold inclusive


def test_the_queue_filters_counts_and_sorts_oldest_first() -> None:
    view = conflict_queue({"A": CONFLICTS}, QueueFilters(), NOW, 14)
    assert [r.conflict_id for r in view.rows] == ["C-1", "C-2", "C-4"]
    assert view.open_by_type == [("MISSING_ASSESSMENT", 1), ("READER_DISAGREEMENT", 2)]
    assert (view.open_total, view.overdue_total) == (3, 1)
    by_subject = conflict_queue(
        {"A": CONFLICTS}, QueueFilters(subject="S02", status="ALL"), NOW, 14
    )
    assert [r.conflict_id for r in by_subject.rows] == ["C-3", "C-2"]
    by_type = conflict_queue({"A": CONFLICTS}, QueueFilters(type="UNMATCHED_TRACT"), NOW, 14)
    assert by_type.rows == []  # decided, and the default status is OPEN
    other_study = conflict_queue({"A": CONFLICTS, "B": CONFLICTS}, QueueFilters(study="B"), NOW, 14)
    assert {r.study for r in other_study.rows} == {"B"}


def test_queue_filters_are_validated() -> None:
    assert QueueFilters.from_query({"subject": " s05 ", "status": "all"}) == QueueFilters(
        subject="S05", status="ALL"
    )
    with pytest.raises(AccessRefusedError, match="status must be one of"):
        QueueFilters.from_query({"status": "LATER"})


TRAIL = pl.DataFrame(
    {
        "at": ["2024-01-01T10:00:00Z", "2024-06-01T10:00:00Z", "2026-11-26T09:00:00Z"],
        "kind": ["mri_read", "injection", "access"],
        "action": ["CREATED", "CORRECTED", "SIGN_IN ALLOWED"],
        "who": ["RAD-A", "crc.jones", "dr.adams (committee)"],
        "subject_id": ["S01", "S01", None],
        "tract_id": ["T1", "T1", None],
        "what": ["mri_read RD-1 v1", "injection INJ-1 v2", "/login"],
        "why": [None, "RAD-A said so", None],
        "old_value": [None, '{"volume_ml":4.0}', None],
        "new_value": [None, '{"volume_ml":5.0}', "ALLOWED"],
        "event_id": ["e1", "e2", "e3"],
        "offset": [0, 0, 0],
    }
)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (AuditFilters(subject="S01"), ["e2", "e1"]),
        (AuditFilters(user="ADAMS"), ["e3"]),
        (AuditFilters(kind="injection"), ["e2"]),
        (AuditFilters(since="2024-06-01"), ["e3", "e2"]),
        (AuditFilters(until="2024-06-01"), ["e2", "e1"]),
        (AuditFilters(since="2024-06-01T10:00:01", until="2026-12-01"), ["e3"]),
    ],
)
def test_audit_filters(filters: AuditFilters, expected: list[str]) -> None:
    assert filter_audit(TRAIL, filters)["event_id"].to_list() == expected


def test_rows_whose_time_is_withheld_sort_last_and_drop_out_of_time_filters() -> None:
    trail = TRAIL.with_columns(at=pl.when(pl.col("kind") == "injection").then(None).otherwise("at"))
    assert filter_audit(trail, AuditFilters())["event_id"].to_list() == ["e3", "e1", "e2"]
    assert filter_audit(trail, AuditFilters(since="2024-01-01"))["event_id"].to_list() == [
        "e3",
        "e1",
    ]


def test_readers_are_labelled_by_role_with_their_identity_only_when_allowed() -> None:
    assert ev.reader_label("R1", "RAD-A", show_id=False) == "Reader 1"
    assert ev.reader_label("ADJ", "RAD-C", show_id=True) == "Adjudicator (RAD-C)"
    assert ev.reader_label("R2", None, show_id=True) == "Reader 2"


def test_audit_dates_are_validated() -> None:
    with pytest.raises(AccessRefusedError, match="until must be a date"):
        AuditFilters.from_query({"until": "26/11/2026"})


def test_the_csv_defuses_formulas_but_keeps_the_text() -> None:
    trail = TRAIL.with_columns(why=pl.lit("=1+1"))
    assert "'=1+1" in audit_csv(trail, AuditFilters())


def _tracts(**columns: list) -> pl.DataFrame:
    base = {
        "subject_id": ["S01", "S01", "S02"],
        "tract_id": ["T1", "T2", "T1"],
        "treated": [True, True, True],
        "completed": [True, True, False],
        "subject_status": ["COMPLETED", "COMPLETED", "WITHDRAWN"],
        "outcome": ["CLOSED", "PENDING", "NOT_CLOSED"],
        "decided_by": ["COMMITTEE", "RULE", "RULE"],
        "post_lock": [False, False, False],
    }
    return pl.DataFrame(base | columns)


def test_readiness_to_lock() -> None:
    locks = pl.DataFrame(schema={"offset": pl.Int64, "action": pl.String, "lock_id": pl.String})
    blocked = readiness(CONFLICTS, _tracts(), locks)
    assert not blocked.ready and "3 open conflict(s)" in blocked.message
    assert "MISSING_ASSESSMENT x1, READER_DISAGREEMENT x2" in blocked.message
    ready = readiness(CONFLICTS.filter(pl.col("status") != "OPEN"), _tracts(), locks)
    assert ready.ready and ready.pending_tracts == 1 and "still PENDING" in ready.message
    locked = readiness(
        CONFLICTS.head(0),
        _tracts(post_lock=[False, True, False]),
        pl.DataFrame({"offset": [0], "action": ["LOCK"], "lock_id": ["L1"]}),
    )
    assert (locked.lock_in_force, locked.changed_after_lock) == ("L1", 1)
    assert locked.message.startswith("Ready to lock")  # data came in after the lock
    settled = readiness(
        CONFLICTS.head(0),
        _tracts(),
        pl.DataFrame({"offset": [0], "action": ["LOCK"], "lock_id": ["L1"]}),
    )
    assert settled.message.startswith("Locked as L1: no open conflicts")


def test_the_swimmer_plot_is_valid_svg_with_a_lane_per_treated_tract() -> None:
    visits = pl.DataFrame(
        {
            "subject_id": ["S01", "S01", "S01"],
            "tract_id": ["T1", "T1", "T2"],
            "visit": ["INJ1", "FU6", "FU6"],
            "status": ["OPEN", "CLOSED", None],
            "inconsistent": [False, False, True],
        }
    )
    tracts = _tracts(subject_id=["S01", "S01", "<S02&>"])
    svg = swimmer_svg(visits, tracts, RULES.visits, highlight=("S01", "T2"))
    root = ET.fromstring(svg)  # well-formed: subject ids are escaped
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "<S02&> T1 (wd)" in texts and "◆ CLOSED" in texts and "PENDING" in texts
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert "S01/T1 FU6: CLOSED" in titles and "S01/T2 FU6: INCONSISTENT" in titles
    assert "S01/T1 FU1: no exam" in titles
    fills = [r.get("fill") for r in root.iter("{http://www.w3.org/2000/svg}rect")]
    assert STATUS_FILL["INCONSISTENT"] in fills
    assert 'class="lane highlight"' in svg


def _exam(version: int, visit: str, opening: str, drains: bool, **extra: object) -> dict:
    return {
        "offset": version,
        "event_id": f"e-{visit}-{version}",
        "record_id": f"EX-{visit}",
        "record_version": version,
        "subject_id": "S01",
        "tract_id": "T1",
        "visit": visit,
        "exam_date": date(2024, 11, 1),
        "examiner_id": "EXAM-1",
        "external_opening": opening,
        "drains_on_compression": drains,
        "discharge_grade": 0,
        "entered_at": datetime(2024, 11, 2, 9, tzinfo=UTC),
        "entered_by": "crc.jones",
        "change_reason": None,
        "deleted": False,
    } | extra


def test_the_exam_timeline_keeps_every_version_with_its_reason() -> None:
    exams = pl.DataFrame(
        [
            _exam(1, "FU6", "OPEN", True),
            _exam(2, "FU6", "CLOSED", False, change_reason="transcription error"),
            _exam(1, "FU5", "CLOSED", True),
        ]
    )
    timeline = {v.visit: v for v in ev.exam_timeline(exams, None, RULES.visits)}
    assert [v for v in timeline] == list(RULES.visits)
    fu6 = timeline["FU6"]
    assert fu6.status == "CLOSED" and fu6.corrected
    assert [(x.version, x.current, x.status) for x in fu6.versions] == [
        (1, False, "OPEN"),
        (2, True, "CLOSED"),
    ]
    assert fu6.versions[1].change_reason == "transcription error"
    assert timeline["FU5"].status == "INCONSISTENT" and timeline["FU5"].inconsistency
    assert timeline["FU4"].status == "missing" and timeline["FU4"].versions == ()


def _read(role: str, reader: str, t2: bool, sizes: list[float] | None, **extra: object) -> dict:
    return {
        "offset": len(role),
        "event_id": f"r-{role}",
        "read_id": f"RD-{role}",
        "read_version": 1,
        "subject_id": "S01",
        "tract_id": "T1",
        "timepoint": "MRI_FINAL",
        "scan_date": date(2024, 12, 1),
        "reader_id": reader,
        "reader_role": role,
        "image_quality": "ADEQUATE",
        "t2_hyperintense": t2,
        "fibrotic": True,
        "contrast_given": True,
        "enhancement": False,
        "collection_mm": sizes,
        "read_at": datetime(2024, 12, 4, 10, tzinfo=UTC),
        "change_reason": None,
        "deleted": False,
    } | extra


def test_mri_reads_side_by_side_mark_where_readers_differ_and_blind_them() -> None:
    reads = pl.DataFrame(
        [_read("R1", "RAD-A", False, None), _read("R2", "RAD-B", False, [25, 22, 5])]
    )
    (final,) = ev.mri_side_by_side(reads, RULES, False, ("MRI_BL", "MRI_FINAL"))
    assert final.readers == ("Reader 1", "Reader 2", "Adjudicator")
    rows = {r.label: r for r in final.rows}
    assert rows["Collection sizes"].values == ("none", "25 x 22 x 5 mm", "—")
    assert rows["Collection sizes"].differs and not rows["Fibrosis"].differs
    assert rows["Rule mri.healed"].values == ("healed", "not healed", "—")
    assert rows["Rule mri.healed"].differs
    (shown,) = ev.mri_side_by_side(reads, RULES, True, ("MRI_FINAL",))
    assert shown.readers[0] == "Reader 1 (RAD-A)"


def test_the_pathology_trend_skips_inadequate_specimens() -> None:
    def report(visit: str, cd68: float, adequate: bool = True) -> dict:
        return {
            "offset": 0,
            "event_id": f"p-{visit}",
            "report_id": f"PA-{visit}",
            "report_version": 1,
            "subject_id": "S01",
            "tract_id": "T1",
            "visit": visit,
            "sample_id": "x",
            "collected_on": date(2024, 1, 1),
            "reported_at": datetime(2024, 1, 2, tzinfo=UTC),
            "pathologist_id": "PATH-1",
            "specimen_adequate": adequate,
            "inflammation_grade": 2,
            "fibrosis_grade": 1,
            "cd68_per_hpf": cd68,
            "cd20_per_hpf": 10.0,
            "cd31_per_hpf": 5.0,
            "change_reason": None,
            "deleted": False,
        }

    trend = ev.pathology_trend(
        pl.DataFrame([report("INJ1", 40.0), report("INJ2", 30.0, False), report("INJ3", 22.5)])
    )
    assert trend is not None
    assert trend.rows[0].values == ("40", "—", "22.5") and trend.changes[0] == "-17.5"
    assert trend.rows[-1].values == ("adequate", "inadequate", "adequate")
    assert ev.pathology_trend(pl.DataFrame()) is None


def test_events_are_described_by_kind_id_version_and_visit() -> None:
    records = {"clinical_exam": pl.DataFrame([_exam(1, "FU6", "CLOSED", False)])}
    assert ev.describe_events(records) == {"e-FU6-1": "clinical_exam EX-FU6 v1 (FU6)"}
    shown = {"clinical_exam": records["clinical_exam"].with_columns(_shown_id=pl.lit("EX-[x]"))}
    assert ev.describe_events(shown) == {"e-FU6-1": "clinical_exam EX-[x] v1 (FU6)"}
