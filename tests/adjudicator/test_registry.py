"""Issue 10: no input stops a study. A second subject record or a second registration of a
tract is a DUPLICATE_REGISTRATION conflict and counts once, in the engine and through the
`tract` command a user runs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from services.demo.trial import columns
from tests.adjudicator.builders import (
    closed_exams,
    conflict_row,
    conflict_types,
    evidence,
    exam,
    healed_reads,
    outcome,
    read,
    run,
    subject,
    tract,
)
from tests.signing import PASSWORD_LINE, as_data_manager

TRACT = str(Path(sys.executable).parent / "tract")


def test_a_second_subject_record_counts_once_and_raises_a_conflict() -> None:
    ev = evidence(
        [
            subject("S1", record_id="SUBJ-S1", event_id="first", offset=1),
            subject("S1", "ENROLLED", record_id="SUBJ-NEW1", event_id="second", offset=9),
        ],
        [tract("S1"), tract("S1", "T2")],
        [*closed_exams("S1"), *closed_exams("S1", "T2")],
        [*healed_reads("S1"), *healed_reads("S1", "T2")],
    )
    result = run(ev)
    assert result.tracts.height == 2
    assert result.patients.select("subject_id", "subject_status", "category").rows() == [
        ("S1", "COMPLETED", "FULL_CLOSURE")  # the first received record counts
    ]
    row = conflict_row(result, "DUPLICATE_REGISTRATION", "S1", "")
    assert row["event_ids"] == ["first", "second"]
    assert "SUBJ-S1 (COMPLETED), SUBJ-NEW1 (ENROLLED)" in row["detail"]
    assert conflict_types(result) == {("DUPLICATE_REGISTRATION", "S1", "")}


def test_the_first_received_record_counts_whatever_the_order_in_the_frame() -> None:
    late = subject("S1", "WITHDRAWN", record_id="SUBJ-NEW1", offset=9)
    early = subject("S1", "COMPLETED", record_id="SUBJ-S1", offset=1)
    for rows in ([late, early], [early, late]):
        result = run(evidence(rows, [tract("S1")], closed_exams("S1"), healed_reads("S1")))
        assert result.patients["subject_status"].to_list() == ["COMPLETED"]
        assert outcome(result, "S1", column="subject_status") == "COMPLETED"


def test_a_tract_registered_twice_counts_once_with_the_first_record() -> None:
    ev = evidence(
        [subject("S1")],
        [
            tract("S1", record_id="TR-S1-T1", event_id="first", offset=1),
            tract("S1", treated=False, record_id="TR-NEW", event_id="second", offset=9),
        ],
        closed_exams("S1"),
        healed_reads("S1"),
    )
    result = run(ev)
    assert result.tracts.select("tract_id", "treated", "outcome").rows() == [("T1", True, "CLOSED")]
    assert result.patients["n_treated"].to_list() == [1]
    row = conflict_row(result, "DUPLICATE_REGISTRATION", "S1", "T1")
    assert "TR-S1-T1 (treated Y), TR-NEW (treated N)" in row["detail"]
    assert row["event_ids"] == ["first", "second"]


def test_registrations_of_a_withdrawn_subject_raise_nothing() -> None:
    ev = evidence(
        [subject("S1", "WITHDRAWN")],
        [tract("S1"), tract("S1", record_id="TR-NEW")],
        [exam("S1", "T1", "INJ1", "OPEN", True, 2)],
        [],
    )
    assert conflict_types(run(ev), status=None) == set()


def test_duplicate_ids_everywhere_still_adjudicate() -> None:
    """The shape that crashed `_beside`: repeated keys in both registries, many subjects."""
    subjects = [f"S{i:03d}" for i in range(60)]
    ev = evidence(
        [subject(s) for s in subjects] + [subject(s, record_id=f"X-{s}") for s in subjects[::7]],
        [tract(s) for s in subjects] + [tract(s, record_id=f"XT-{s}") for s in subjects[::5]],
        [e for s in subjects for e in closed_exams(s)],
        [r for s in subjects for r in healed_reads(s)] + [read("S999", "T1", "R1")],
    )
    result = run(ev)
    assert result.tracts.height == result.patients.height == len(subjects)
    duplicates = result.conflicts.filter(pl.col("type") == "DUPLICATE_REGISTRATION")
    assert duplicates.height == len(subjects[::7]) + len(subjects[::5])
    assert result.conflicts["conflict_id"].is_unique().all()


# Through the `tract` command ----------------------------------------------------------------


def tract_cli(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TRACT, "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=180,
        input=stdin,
    )


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns(path.name), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.slow
def test_a_second_subject_record_and_a_second_registration_stop_nothing(
    decided_home: Path, tmp_path: Path
) -> None:
    common = {
        "record_version": 1,
        "entered_at": "2025-03-01T09:00:00Z",
        "entered_by": "dm.x",
        "change_reason": "",
        "deleted": "N",
    }
    subjects = write_csv(
        tmp_path / "new" / "subjects.csv",
        [
            common
            | {
                "record_id": "SUBJ-NEW1",
                "subject_id": "S01",
                "site_id": "SITE01",
                "enrolled_on": "2024-01-01",
                "status": "COMPLETED",
                "withdrawn_on": "",
                "withdrawal_reason": "",
            }
        ],
    )
    tracts = write_csv(
        tmp_path / "new" / "tracts.csv",
        [
            common
            | {
                "record_id": "TR-NEW1",
                "subject_id": "S01",
                "tract_id": "T1",
                "parks_type": "SUPERFICIAL",
                "external_opening_clock": 3,
                "treated": "Y",
                "draining_at_baseline": "Y",
            }
        ],
    )
    done = tract_cli(decided_home, "ingest", "--study", "DEMO", str(subjects), str(tracts))
    assert done.returncode == 0, done.stderr

    for command in ("outcomes", "conflicts", "report"):
        done = tract_cli(decided_home, command, "--study", "DEMO", "--json")
        assert done.returncode == 0, f"{command}: {done.stderr}"
    report = json.loads(tract_cli(decided_home, "report", "--study", "DEMO", "--json").stdout)
    assert (report["tracts"]["closed"], report["tracts"]["treated"]) == (30, 43)
    assert report["completers"]["n"] == 20
    conflicts = json.loads(tract_cli(decided_home, "conflicts", "--study", "DEMO", "--json").stdout)
    raised = {(c["type"], c["subject_id"], c["tract_id"]) for c in conflicts}
    assert raised == {
        ("DUPLICATE_REGISTRATION", "S01", ""),
        ("DUPLICATE_REGISTRATION", "S01", "T1"),
    }
    lock = tract_cli(
        decided_home, "lock", "--study", "DEMO", "--lock-id", "L1", "--reason", "r" * 12,
        *as_data_manager(decided_home), stdin=PASSWORD_LINE,
    )  # fmt: skip
    assert lock.returncode == 1
    assert "DUPLICATE_REGISTRATION x2" in lock.stderr
