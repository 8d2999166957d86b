"""Idempotency: ingesting the same files again changes nothing (same outcomes, same conflicts,
no new evidence or dead letters); the repeat reports every row as a duplicate or rejected again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.adjudicator.engine import INPUT_COLUMNS

from .helpers import CASES, EVIDENCE, STUDY, event_ids, ingest, ingest_process, platform

TRIAL = sorted((CASES / "trial").iterdir())
TOPICS = (*EVIDENCE, "rejected_row", "conflict_change")


def state(home: Path) -> dict[str, Any]:
    """What a re-run must not change: event ids per topic, outcomes and conflicts."""
    with platform(home) as found:
        result = found.adjudicate(STUDY)
    return {
        "events": {topic: event_ids(home, topic) for topic in TOPICS},
        "tracts": result.tracts.select(
            "subject_id", "tract_id", "outcome", "rule_outcome", "clinical", "mri", *INPUT_COLUMNS
        ).to_dicts(),
        "patients": result.patients.select("subject_id", "category").to_dicts(),
        "conflicts": result.conflicts.select(
            "conflict_id", "type", "status", "fingerprint"
        ).to_dicts(),
    }


def test_reingesting_the_same_files_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ingest(home, *TRIAL)
    assert first.exit_code == 0
    once = state(home)
    assert {c["type"] for c in once["conflicts"]} >= {"READER_DISAGREEMENT", "MISSING_ASSESSMENT"}
    assert any(once["events"]["rejected_row"])

    again = ingest_process(home, *TRIAL)
    reversed_order = ingest(home, *reversed(TRIAL))

    assert state(home) == once
    for run in (again, reversed_order):
        assert run.exit_code == 0, run.stderr
        for before in first.reports():
            report = run.report(before["file"])
            assert report["accepted"] == 0
            assert report["duplicates"] == before["accepted"] + before["duplicates"]
            assert report["rejected"] == before["rejected"]
            # Same rows, same fields; a conflicting duplicate's reason may now name the log
            # ("already received") instead of the earlier line of the file.
            assert [(r["line"], r["field"]) for r in report["rejections"]] == [
                (r["line"], r["field"]) for r in before["rejections"]
            ]
