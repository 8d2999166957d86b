"""Record identity (DATA_TRANSFER.md): duplicates, corrections, late versions and deletions.

The files under ``cases/identity/`` are sent one after another into one home, on top of the
trial's subject and tract registry, and the current state is read back the way the
adjudicator reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from .helpers import (
    CASES,
    STUDY,
    current_records,
    event_ids,
    ingest,
    payloads,
    platform,
    records,
)

IDENTITY = CASES / "identity"
EXAM = "clinical_exam"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home with the trial's subjects and tracts, and the first send of exams."""
    home = tmp_path / "home"
    trial = CASES / "trial"
    assert ingest(home, trial / "subjects.csv", trial / "tracts.csv").exit_code == 0
    run = ingest(home, IDENTITY / "first_send.csv", kind=EXAM)
    assert run.report("first_send.csv")["accepted"] == 3
    return home


def _counts(report: dict) -> tuple[int, int, int, int]:
    return report["read"], report["accepted"], report["duplicates"], report["rejected"]


def _versions(home: Path, record_id: str) -> list[int]:
    found = records(home, EXAM).filter(pl.col("record_id") == record_id)
    return found["record_version"].to_list()


def _visit(home: Path, tract_id: str, visit: str) -> dict | None:
    """The adjudicator's view of one S01 visit (None when no current exam holds it)."""
    with platform(home) as found:
        visits = found.adjudicate(STUDY).visits
    rows = visits.filter(
        (pl.col("subject_id") == "S01")
        & (pl.col("tract_id") == tract_id)
        & (pl.col("visit") == visit)
    )
    return rows.row(0, named=True) if rows.height else None


def _audit(home: Path, what: str) -> list[dict]:
    with platform(home) as found:
        trail = found.audit(STUDY)
    return trail.filter(pl.col("what") == what).to_dicts()


def test_identical_resend_is_a_duplicate_not_applied_twice(home: Path) -> None:
    """The same file again: every row counted as a duplicate, no evidence event appended."""
    before = event_ids(home, EXAM)
    run = ingest(home, IDENTITY / "first_send.csv", kind=EXAM)

    assert _counts(run.report("first_send.csv")) == (3, 0, 3, 0)
    assert event_ids(home, EXAM) == before
    assert _versions(home, "EX-A1") == [1]
    assert [r["action"] for r in _audit(home, "clinical_exam EX-A1 v1")] == ["CREATED"]


def test_identical_rows_within_one_file(tmp_path: Path) -> None:
    """A row repeated in the same file is applied once and counted once as a duplicate."""
    home = tmp_path / "home"
    run = ingest(home, IDENTITY / "identical_in_file.csv", kind=EXAM)

    assert _counts(run.report("identical_in_file.csv")) == (3, 2, 1, 0)
    assert [p["record_id"] for p in payloads(home, EXAM)] == ["EX-A1", "EX-A2"]


def test_higher_version_supersedes(home: Path) -> None:
    """A correction (version 3, with a reason) becomes current; version 1 stays in the log."""
    assert _visit(home, "T1", "FU6")["status"] == "OPEN"
    run = ingest(home, IDENTITY / "correction_v3.csv", kind=EXAM)

    assert _counts(run.report("correction_v3.csv")) == (1, 1, 0, 0)
    assert _versions(home, "EX-A1") == [1, 3]
    now = current_records(home, EXAM).filter(pl.col("record_id") == "EX-A1").row(0, named=True)
    current = (now["record_version"], now["external_opening"], now["discharge_grade"])
    assert current == (3, "CLOSED", 0)
    assert now["change_reason"] == "re-examined after the swelling settled"
    visit = _visit(home, "T1", "FU6")  # what the rules see: only version 3
    assert (visit["status"], visit["discharge_grade"]) == ("CLOSED", 0)
    assert visit["event_ids"] == [now["event_id"]]

    (corrected,) = _audit(home, "clinical_exam EX-A1 v3")
    assert corrected["action"] == "CORRECTED"
    assert corrected["why"] == "re-examined after the swelling settled"
    assert json.loads(corrected["old_value"])["external_opening"] == "OPEN"
    assert json.loads(corrected["new_value"])["external_opening"] == "CLOSED"


def test_late_lower_version_is_kept_but_never_current(home: Path) -> None:
    """Version 2 arriving after version 3 is accepted and audited, but version 3 stays current."""
    ingest(home, IDENTITY / "correction_v3.csv", kind=EXAM)
    run = ingest(home, IDENTITY / "late_v2.csv", kind=EXAM)

    assert _counts(run.report("late_v2.csv")) == (1, 1, 0, 0)
    assert _versions(home, "EX-A1") == [1, 3, 2]  # in arrival order: nothing is reordered
    now = current_records(home, EXAM).filter(pl.col("record_id") == "EX-A1")
    assert now["record_version"].to_list() == [3]
    assert _visit(home, "T1", "FU6")["status"] == "CLOSED"

    (late,) = _audit(home, "clinical_exam EX-A1 v2")
    assert late["action"] == "LATE_VERSION_KEPT"
    assert late["why"] == "grade was 1 not 2"

    again = ingest(home, IDENTITY / "late_v2.csv", kind=EXAM)
    assert _counts(again.report("late_v2.csv")) == (1, 0, 1, 0)
    assert _versions(home, "EX-A1") == [1, 3, 2]


def test_deletion_retires_the_record_and_removes_nothing(home: Path) -> None:
    """``deleted = Y`` takes the record out of the current state; every version stays stored."""
    assert _visit(home, "T2", "FU6") is not None
    before = event_ids(home, EXAM)
    run = ingest(home, IDENTITY / "deletion.csv", kind=EXAM)

    assert _counts(run.report("deletion.csv")) == (1, 1, 0, 0)
    assert event_ids(home, EXAM)[: len(before)] == before
    assert _versions(home, "EX-A3") == [1, 2]
    assert "EX-A3" not in current_records(home, EXAM)["record_id"].to_list()
    assert _visit(home, "T2", "FU6") is None
    (deleted,) = _audit(home, "clinical_exam EX-A3 v2")
    assert (deleted["action"], deleted["why"]) == ("DELETED", "entered for the wrong tract")

    resent = ingest(home, IDENTITY / "first_send.csv", kind=EXAM)
    assert _counts(resent.report("first_send.csv")) == (3, 0, 3, 0)
    assert "EX-A3" not in current_records(home, EXAM)["record_id"].to_list()


def test_mri_read_correction_supersedes(tmp_path: Path) -> None:
    """Identity works on ``read_id`` + ``read_version`` for the imaging core lab's JSON Lines."""
    home = tmp_path / "home"
    ingest(home, IDENTITY / "mri_reads_v1.jsonl", kind="mri_read")
    run = ingest(home, IDENTITY / "mri_reads_v2.jsonl", kind="mri_read")

    assert _counts(run.report("mri_reads_v2.jsonl")) == (1, 1, 0, 0)
    now = current_records(home, "mri_read").row(0, named=True)
    assert (now["read_id"], now["read_version"], now["t2_hyperintense"]) == ("RD-A1", 2, False)
    assert now["collection_mm"] is None
    assert records(home, "mri_read")["read_version"].to_list() == [1, 2]


@pytest.mark.parametrize("few", [1_000, 0])
def test_identity_is_the_same_by_filter_or_by_join(
    home: Path, monkeypatch: pytest.MonkeyPatch, few: int
) -> None:
    """A resend of a few ids is checked by a filter the Parquet reader prunes with, a big file
    by a join: the same duplicates and conflicting duplicates either way."""
    import services.platform

    monkeypatch.setattr(services.platform, "FEW_IDS", few)
    resent = ingest(home, IDENTITY / "first_send.csv", kind=EXAM)
    assert _counts(resent.report("first_send.csv")) == (3, 0, 3, 0)
    with platform(home) as found:
        ids = pl.Series(["EX-A1", "EX-A3", "EX-NEW"])
        known = found.known_records(EXAM, STUDY, ids).sort("record_id")
    assert known["record_id"].to_list() == ["EX-A1", "EX-A3"]
    assert known["version"].to_list() == [1, 1]
