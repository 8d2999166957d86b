"""The adjudicator service's state file keeps what it still owes across a restart."""

from __future__ import annotations

from pathlib import Path

from services.adjudicator.applied import AppliedLog


def test_subjects_pending_publication_survive_a_restart(tmp_path: Path) -> None:
    pending = {"STUDY-A": {"S02", "S01"}, "STUDY-B": None}  # None: the whole study
    AppliedLog.at(tmp_path).apply([], {("clinical_exam", 0): 7}, [], [], pending)

    reopened = AppliedLog.at(tmp_path)
    assert reopened.dirty() == {"STUDY-A": {"S01", "S02"}, "STUDY-B": None}
    assert reopened.kafka_positions() == {("clinical_exam", 0): 7}

    reopened.apply([], {("clinical_exam", 0): 9}, [], [], {})  # published: nothing owed
    assert AppliedLog.at(tmp_path).dirty() == {}
