"""One subject's audit trail, read for that subject alone, is the study's trail filtered to it.

The page and its export filtered by subject no longer build the whole study's trail (seconds
at 100,000 subjects): they read only the records that bear on the subject. The rows must be
the same, for every role: a record moved to another subject by a correction keeps its old and
new values, a subject typed in another case still matches, and nothing without a subject
(locks, accounts) comes along.
"""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pytest

import schemas
from services.audit import AUDIT_KINDS, access_event
from services.platform import Platform
from services.queries import filter_queries
from services.web.visibility import VisiblePlatform, policy_for
from tests.store.trials import STUDY

EXAM = schemas.contract("clinical_exam")


def _exam_file(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, EXAM.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def platform(decided_home: Path, tmp_path: Path) -> Platform:
    """The decided demo locked, then: an exam moved from S01 to S02 by a correction, a refused
    exam row whose subject was typed in lower case, and a subject's page viewed as "s05"."""
    platform = Platform.embedded(decided_home)
    platform.lock(STUDY, "L1", "interim look", "dm.jones", open_queries_reason="none")
    moved = platform.records("clinical_exam", STUDY).filter(pl.col("record_id") == "EX-S01-T1-INJ1")

    def text(value: object) -> str:
        return {None: "", True: "Y", False: "N"}.get(value, str(value))  # type: ignore[call-overload]

    row = {k: text(v) for k, v in moved.collect().row(0, named=True).items()}
    row = {k: row[k] for k in EXAM.columns} | {
        "record_version": "2",
        "subject_id": "S02",
        "entered_at": "2026-02-01T10:00:00Z",
        "change_reason": "filed under the wrong subject",
        "deleted": "N",
    }
    refused = row | {"record_id": "EX-NEW", "record_version": "1", "subject_id": "s05"}
    refused |= {"visit": "NOT_A_VISIT", "change_reason": ""}
    report = platform.ingest(STUDY, [_exam_file(tmp_path / "clinical_exams.csv", [row, refused])])
    (done,) = report.reports
    assert (done.accepted, len(done.rejected)) == (1, 1), done.rejected
    platform.record(
        [
            access_event(
                who="mon.ruiz",
                role="monitor",
                action="VIEW",
                outcome="OK",
                study=STUDY,
                subject_id="s05",
            )
        ]
    )
    return platform


def _of(trail: pl.DataFrame, subject: str) -> pl.DataFrame:
    return trail.filter(pl.col("subject_id").str.to_uppercase() == subject.upper())


def test_a_subjects_trail_is_the_studys_trail_filtered_to_it(platform: Platform) -> None:
    whole = platform.audit(STUDY)
    subjects = whole["subject_id"].drop_nulls().unique().to_list()
    assert {"S01", "S02", "s05"} <= set(subjects) and whole["kind"].is_in(["lock"]).any()
    assert set(whole["kind"]) <= set(AUDIT_KINDS)  # what the page's kind filter offers
    for subject in [*subjects, "s01", "S05", "NOBODY"]:
        alone = platform.audit(STUDY, subject=subject)
        assert alone.equals(_of(whole, subject)), subject

    moved = platform.audit(STUDY, subject="S02").filter(
        pl.col("what") == "clinical_exam EX-S01-T1-INJ1 v2"
    )
    (old, new) = moved.select("old_value", "new_value").row(0)
    assert '"subject_id":"S01"' in old and '"subject_id":"S02"' in new
    both = platform.audit(STUDY, subject="S05")
    assert set(both["kind"]) >= {"rejected_row", "access"} and "lock" not in set(both["kind"])


@pytest.mark.parametrize("role", ["committee", "monitor"])
def test_a_subjects_trail_is_the_same_for_each_role(platform: Platform, role: str) -> None:
    seen = VisiblePlatform(platform, policy_for(role))
    whole = seen.audit(STUDY)
    for subject in ["S01", "S02", "s05", "S09", "S10"]:
        assert seen.audit(STUDY, subject=subject).equals(_of(whole, subject)), subject
    if role == "committee":  # the subject's reads are blinded as the study's are
        reads = seen.audit(STUDY, subject="S10").filter(pl.col("kind") == "mri_read")
        assert reads.height and not reads["who"].str.contains("RAD-").any()


def test_tract_audit_subject_prints_the_subjects_rows(platform: Platform) -> None:
    from tests.cli.test_main import tract_json

    rows = tract_json(platform.home, "audit", "--study", STUDY, "--subject", "s05")
    expected = _of(platform.audit(STUDY), "S05")
    assert [r["event_id"] for r in rows] == expected["event_id"].to_list()  # type: ignore[union-attr]
    assert {r["kind"] for r in rows} >= {"rejected_row", "access"}  # type: ignore[union-attr]


@pytest.mark.parametrize("role", ["committee", "data_manager"])
def test_a_subjects_queries_are_the_studys_filtered_to_it(platform: Platform, role: str) -> None:
    """A subject's page lists its site queries from that subject's records alone."""
    seen = VisiblePlatform(platform, policy_for(role))
    every = seen.queries(STUDY)
    named = every["subject_id"].drop_nulls().unique().to_list()
    assert "s05" in named and len(named) > 5  # the refused row typed in lower case is a query
    for subject in [*named, "S05", "S13", "NOBODY"]:
        alone = seen.queries(STUDY, subject=subject)
        assert alone.equals(filter_queries(every, subject=subject)), subject
