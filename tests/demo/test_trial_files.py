"""The demo and synthetic transfer files: formats, counts, planted edge cases, determinism.

The demo trial is the platform's acceptance data: besides spot checks, these tests ingest it
with the real platform and check that exactly the planted rows are refused and exactly the
scripted conflicts are raised (tests/test_cli_demo.py checks the published numbers end to end).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import pytest

import schemas
from services.demo.synthetic import write_synthetic_trial
from services.demo.trial import (
    DEMO_DECISIONS,
    DEMO_STUDY,
    EXPECTED_CONFLICTS,
    FILES,
    write_demo_trial,
)
from services.ingest.report import IngestReport
from services.platform import Platform

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
Row = dict[str, Any]

# Every row the ingest must refuse, by file, with the field at fault.
BAD_ROWS = {
    "tracts.csv": {("TR-BAD-CLOCK13", 1): "external_opening_clock"},
    "clinical_exams.csv": {
        ("EX-BAD-GRADE7", 1): "discharge_grade",
        ("EX-BAD-DATE", 1): "exam_date",
        ("EX-BAD-VISIT", 1): "visit",
        ("EX-BAD-EXAMINER", 1): "examiner_id",
        ("EX-S06-T1-FU1", 2): "change_reason",
        ("EX-S07-T1-FU1", 1): "conflicting duplicate",
    },
    "mri_reads.jsonl": {("RD-BAD-NEGSIZE", 1): "collection_mm", ("RD-BAD-ROLE", 1): "reader_role"},
    "pathology.csv": {("PA-BAD-INFL5", 1): "inflammation_grade"},
}


def _load(path: Path) -> list[Row]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_demo_trial(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def rows(demo: dict[str, Path]) -> dict[str, list[Row]]:
    return {name: _load(path) for name, path in demo.items()}


@pytest.fixture(scope="module")
def first_ingest(
    demo: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Platform, dict[str, IngestReport]]:
    """The demo ingested by the real platform (no decisions yet), with its reports by file."""
    platform = Platform.embedded(tmp_path_factory.mktemp("home"))
    outcome = platform.ingest(DEMO_STUDY, list(demo.values()))
    assert not outcome.refused
    return platform, {r.file: r for r in outcome.reports}


@pytest.fixture(scope="module")
def ingested(
    first_ingest: tuple[Platform, dict[str, IngestReport]], rows: dict[str, list[Row]]
) -> dict[str, tuple[list[Row], dict, int]]:
    """Per file: the rows not rejected, the rejections by (record id, version), duplicates."""
    _, reports = first_ingest
    out = {}
    for name, file_rows in rows.items():
        report = reports[name]
        contract = schemas.source_contracts()[name]
        offset = 1 if name.endswith(".jsonl") else 2
        rejected = {}
        for rejection in report.rejected:
            row = file_rows[rejection.line - offset]
            key = (row[contract.id_field], int(row[contract.version_field]))
            conflicting = rejection.reason.startswith("conflicting duplicate")
            rejected[key] = "conflicting duplicate" if conflicting else rejection.field
        bad_lines = {r.line - offset for r in report.rejected}
        live = [r for i, r in enumerate(file_rows) if i not in bad_lines]
        out[name] = (live, rejected, report.duplicates)
    return out


# --- the demo trial ---------------------------------------------------------------------------


def test_demo_writes_the_six_files(demo: dict[str, Path]) -> None:
    assert DEMO_STUDY == "DEMO"
    assert tuple(demo) == FILES
    assert all(p.exists() and p.stat().st_size > 0 for p in demo.values())


def test_headers_equal_contract_field_order(demo: dict[str, Path]) -> None:
    contracts = schemas.source_contracts()
    assert set(contracts) == set(FILES)
    for name, path in demo.items():
        want = list(contracts[name].columns)
        if name.endswith(".jsonl"):
            for line in path.read_text().splitlines():
                assert list(json.loads(line)) == want, name
        else:
            assert path.read_text().splitlines()[0].split(",") == want, name


def test_only_the_planted_bad_rows_are_rejected(ingested: dict) -> None:
    for name in FILES:
        _, rejected, _ = ingested[name]
        assert rejected == BAD_ROWS.get(name, {}), name


def test_exact_duplicate_line_is_the_only_duplicate(ingested: dict) -> None:
    assert {name: ingested[name][2] for name in FILES} == {
        name: int(name == "clinical_exams.csv") for name in FILES
    }


def test_counts(rows: dict[str, list[Row]], ingested: dict) -> None:
    subjects, _, _ = ingested["subjects.csv"]
    status = {r["subject_id"]: r["status"] for r in subjects}
    assert len(status) == 23
    assert sorted(s for s, st in status.items() if st == "WITHDRAWN") == ["S21", "S22", "S23"]
    tracts, _, _ = ingested["tracts.csv"]
    treated = [r for r in tracts if r["treated"] == "Y"]
    assert sum(status[r["subject_id"]] == "COMPLETED" for r in treated) == 43
    assert {(r["subject_id"], r["tract_id"]) for r in tracts if r["treated"] == "N"} == {
        ("S01", "T2"),
        ("S17", "T3"),
    }
    per_withdrawn = Counter(
        r["subject_id"] for r in treated if status[r["subject_id"]] == "WITHDRAWN"
    )
    assert all(1 <= n <= 2 for n in per_withdrawn.values()) and len(per_withdrawn) == 3
    # Injections: 5 mL for each treated tract at each injection visit attended.
    injections = rows["injections.csv"]
    assert {r["volume_ml"] for r in injections} == {"5.0"}
    assert len(injections) == 43 * 3 + sum(per_withdrawn.values()) * 2
    untreated = {("S01", "T2"), ("S17", "T3")}
    assert not [r for r in injections if (r["subject_id"], r["tract_id"]) in untreated]


def test_the_platform_raises_exactly_the_scripted_conflicts(first_ingest: tuple) -> None:
    platform, _ = first_ingest
    conflicts = platform.adjudicate(DEMO_STUDY).conflicts
    assert set(conflicts.select("type", "subject_id", "tract_id").iter_rows()) == set(
        EXPECTED_CONFLICTS
    )


def test_scripted_decisions_are_complete_and_well_formed() -> None:
    statuses = schemas.contract("committee_decision").field("status").values
    assert len(DEMO_DECISIONS) == 7
    for d in DEMO_DECISIONS:
        assert d.status in statuses
        assert 2 <= len(d.members) <= 3 and len(set(d.members)) == len(d.members)
        assert len(d.rationale) > 40
        assert (d.maps_to is not None) == (d.status == "MAPPED")
    assert ("UNMATCHED_TRACT", "S09", "T1X") in EXPECTED_CONFLICTS
    mapped = next(d for d in DEMO_DECISIONS if d.status == "MAPPED")
    assert (mapped.subject_id, mapped.tract_id, mapped.maps_to) == ("S09", "T1X", "T1")


def _exam_rows(rows: dict[str, list[Row]], record_id: str) -> list[Row]:
    return [r for r in rows["clinical_exams.csv"] if r["record_id"] == record_id]


def _state(r: Row) -> tuple[str, str, str]:
    return (r["external_opening"], r["drains_on_compression"], r["discharge_grade"])


def test_corrections_and_late_lower_version(rows: dict[str, list[Row]]) -> None:
    s02 = _exam_rows(rows, "EX-S02-T1-FU6")
    assert [(r["record_version"], _state(r)) for r in s02] == [
        ("1", ("OPEN", "Y", "2")),
        ("2", ("CLOSED", "N", "0")),
    ]
    assert s02[1]["change_reason"] == "transcription error corrected against source notes"
    s03 = _exam_rows(rows, "EX-S03-T1-FU6")
    assert [r["record_version"] for r in s03] == ["2", "1"]  # the lower version arrives late
    assert _state(s03[0]) == ("CLOSED", "N", "0") and s03[1]["external_opening"] == "OPEN"


def test_deleted_copy_and_exact_duplicate(rows: dict[str, list[Row]]) -> None:
    real = _exam_rows(rows, "EX-S04-T1-FU2")[0]
    dup = _exam_rows(rows, "EX-S04-T1-FU2-DUP")
    assert [(r["record_version"], r["deleted"]) for r in dup] == [("1", "N"), ("2", "Y")]
    assert dup[1]["change_reason"] == "entered twice"
    assert all(_state(r) == _state(real) and r["exam_date"] == real["exam_date"] for r in dup)
    twice = _exam_rows(rows, "EX-S05-T1-INJ1")
    assert len(twice) == 2 and twice[0] == twice[1]


def test_unmatched_tracts(rows: dict[str, list[Row]]) -> None:
    typo = _exam_rows(rows, "EX-S09-T1X-FU2")[0]
    real = _exam_rows(rows, "EX-S09-T1-FU2")[0]
    same = ("visit", "exam_date", "examiner_id", "external_opening", "drains_on_compression")
    assert typo["tract_id"] == "T1X" and all(typo[k] == real[k] for k in same)
    assert typo["discharge_grade"] == real["discharge_grade"]
    new = _exam_rows(rows, "EX-S10-T9-FU4")[0]
    assert _state(new) == ("OPEN", "Y", "1") and new["visit"] == "FU4"


def test_clinical_edge_cases(rows: dict[str, list[Row]]) -> None:
    visits = {
        r["visit"] for r in rows["clinical_exams.csv"] if r["record_id"].startswith("EX-S11-T1-")
    }
    assert "FU5" not in visits and "FU6" in visits
    assert _state(_exam_rows(rows, "EX-S11-T1-FU6")[0])[:2] == ("CLOSED", "N")
    assert _state(_exam_rows(rows, "EX-S12-T1-FU3")[0])[:2] == ("CLOSED", "Y")
    assert _state(_exam_rows(rows, "EX-S14-T3-FU5")[0])[:2] == ("OPEN", "Y")
    assert _state(_exam_rows(rows, "EX-S14-T3-FU6")[0]) == ("CLOSED", "N", "0")
    assert _exam_rows(rows, "EX-S14-T3-INJ1")[0]["discharge_grade"] == "0"
    for v in ("FU5", "FU6"):
        assert _state(_exam_rows(rows, f"EX-S13-T3-{v}")[0]) == ("CLOSED", "N", "0")
    assert _state(_exam_rows(rows, "EX-S22-T1-INJ2")[0])[:2] == ("CLOSED", "Y")
    s16 = [_state(_exam_rows(rows, f"EX-S16-T1-{v}")[0]) for v in ("INJ1", "FU6")]
    assert s16 == [("OPEN", "Y", "3"), ("OPEN", "Y", "1")]
    s20 = [r for r in rows["subjects.csv"] if r["subject_id"] == "S20"]
    assert [(r["record_version"], r["status"]) for r in s20] == [
        ("1", "ENROLLED"),
        ("2", "COMPLETED"),
    ]
    assert s20[1]["change_reason"] == "final visit completed"
    withdrawn = [r for r in rows["subjects.csv"] if r["status"] == "WITHDRAWN"]
    assert all(r["withdrawn_on"] and r["withdrawal_reason"] for r in withdrawn)


def _final_reads(rows: dict[str, list[Row]], subject: str, tract: str) -> dict[str, Row]:
    return {
        r["reader_role"]: r
        for r in rows["mri_reads.jsonl"]
        if (r["subject_id"], r["tract_id"], r["timepoint"]) == (subject, tract, "MRI_FINAL")
        and not r["read_id"].startswith("RD-BAD")
    }


def test_mri_edge_cases(rows: dict[str, list[Row]]) -> None:
    def t2(subject: str, tract: str) -> dict[str, bool]:
        return {k: r["t2_hyperintense"] for k, r in _final_reads(rows, subject, tract).items()}

    assert t2("S04", "T1") == {"R1": False, "R2": True, "ADJ": False}
    assert t2("S17", "T1") == {"R1": False, "R2": True, "ADJ": True}
    assert t2("S05", "T2") == {"R1": False, "R2": True}
    s13 = _final_reads(rows, "S13", "T3")
    assert all(
        r["t2_hyperintense"] and r["collection_mm"] == [25.0, 22.0, 10.0] for r in s13.values()
    )
    assert [r["collection_mm"] for r in _final_reads(rows, "S06", "T1").values()] == [
        [20.0, 20.0, 5.0]
    ] * 2
    assert [r["collection_mm"] for r in _final_reads(rows, "S07", "T1").values()] == [
        [25.0, 10.0, 8.0]
    ] * 2
    s08 = _final_reads(rows, "S08", "T1")
    assert (
        s08["R2"]["image_quality"] == "INADEQUATE"
        and not s08["ADJ"]["t2_hyperintense"]
        and not s08["R1"]["t2_hyperintense"]
    )
    assert {r["reader_id"] for r in rows["mri_reads.jsonl"] if r["reader_role"] == "ADJ"} == {
        "RAD-C"
    }


def test_schedule(ingested: dict) -> None:
    exams, _, _ = ingested["clinical_exams.csv"]
    day = {
        (r["subject_id"], r["tract_id"], r["visit"]): date.fromisoformat(r["exam_date"])
        for r in exams
    }
    offsets = {"INJ2": 60, "INJ3": 120, **{f"FU{k}": 120 + 30 * k for k in range(1, 7)}}
    for (s, t, visit), d in day.items():
        inj1 = day.get((s, t, "INJ1"))
        if inj1 is None:  # the unmatched-tract exams
            continue
        assert date(2024, 1, 8) <= inj1 <= date(2024, 6, 30)
        if visit != "INJ1":
            assert abs((d - inj1).days - offsets[visit]) <= 3, (s, t, visit)
        if visit == "FU6" and (s, t, "FU5") in day:
            assert (d - day[s, t, "FU5"]).days >= 28
    reads, _, _ = ingested["mri_reads.jsonl"]
    for r in reads:
        inj1 = day[r["subject_id"], "T1", "INJ1"]
        want = -14 if r["timepoint"] == "MRI_BL" else 300
        assert (date.fromisoformat(r["scan_date"]) - inj1).days == want


def test_pathology_trends(ingested: dict) -> None:
    reports, _, _ = ingested["pathology.csv"]
    assert len(reports) == 43 * 3 + 5 * 2
    assert {r["specimen_adequate"] for r in reports} == {"Y"}
    by_visit: dict[str, list[Row]] = defaultdict(list)
    for r in reports:
        by_visit[r["visit"]].append(r)

    def median(visit: str, col: str) -> float:
        xs = sorted(float(r[col]) for r in by_visit[visit])
        return xs[len(xs) // 2]

    assert 35 <= median("INJ1", "cd68_per_hpf") <= 45 and 17 <= median("INJ3", "cd68_per_hpf") <= 28
    assert 21 <= median("INJ1", "cd20_per_hpf") <= 29 and 10 <= median("INJ3", "cd20_per_hpf") <= 18
    assert 6 <= median("INJ1", "cd31_per_hpf") <= 10 and 11 <= median("INJ3", "cd31_per_hpf") <= 15
    assert {r["inflammation_grade"] for r in by_visit["INJ1"]} <= {"2", "3"}
    assert {r["inflammation_grade"] for r in by_visit["INJ3"]} <= {"1", "2"}
    assert {r["fibrosis_grade"] for r in reports} <= {"1", "2", "3"}


def test_demo_is_deterministic(demo: dict[str, Path], tmp_path: Path) -> None:
    again = write_demo_trial(tmp_path / "again")
    for name in FILES:
        assert again[name].read_bytes() == demo[name].read_bytes(), name


# --- synthetic trials -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_synthetic_trial(tmp_path_factory.mktemp("syn"), 200, seed=7)


def test_synthetic_headers_and_values(synthetic: dict[str, Path], tmp_path: Path) -> None:
    contracts = schemas.source_contracts()
    assert tuple(synthetic) == FILES
    for name, path in synthetic.items():
        c = contracts[name]
        if name.endswith(".jsonl"):
            assert all(
                list(json.loads(x)) == list(c.columns) for x in path.read_text().splitlines()
            )
        else:
            assert path.read_text().splitlines()[0].split(",") == list(c.columns)
    reports = Platform.embedded(tmp_path).ingest("SYN", list(synthetic.values())).reports
    for report in reports:
        assert (report.rejected, report.duplicates) == ((), 0), report.file
        assert report.accepted == len(_load(synthetic[report.file]))


def test_synthetic_shape(synthetic: dict[str, Path]) -> None:
    data = {name: _load(p) for name, p in synthetic.items()}
    assert len(data["subjects.csv"]) == 200
    per_subject = sum(len(v) for v in data.values()) / 200
    assert 26 <= per_subject <= 34
    completers = {r["subject_id"] for r in data["subjects.csv"] if r["status"] == "COMPLETED"}
    assert 0.8 <= len(completers) / 200 <= 0.97
    assert 1.7 <= len(data["tracts.csv"]) / 200 <= 2.3
    fu6 = [r for r in data["clinical_exams.csv"] if r["visit"] == "FU6"]
    closed = sum(r["external_opening"] == "CLOSED" for r in fu6) / len(fu6)
    assert 0.5 <= closed <= 0.7
    adj = [r for r in data["mri_reads.jsonl"] if r["reader_role"] == "ADJ"]
    assert adj and all(r["timepoint"] == "MRI_FINAL" for r in adj)
    assert any(r["collection_mm"] for r in data["mri_reads.jsonl"])


def test_synthetic_is_deterministic(synthetic: dict[str, Path], tmp_path: Path) -> None:
    same = write_synthetic_trial(tmp_path / "same", 200, seed=7)
    other = write_synthetic_trial(tmp_path / "other", 200, seed=8)
    for name in FILES:
        assert same[name].read_bytes() == synthetic[name].read_bytes(), name
    assert other["clinical_exams.csv"].read_bytes() != synthetic["clinical_exams.csv"].read_bytes()
