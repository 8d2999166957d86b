"""Idempotency: ingesting the same files again changes nothing (same outcomes, same conflicts,
no new evidence or dead letters); the repeat reports every row as a duplicate or rejected again.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import services.platform as platform_module
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


def test_each_file_of_a_run_is_checked_against_the_files_applied_before_it(
    tmp_path: Path,
) -> None:
    """The next file is read while one is appended; its identities are checked only after that
    append: the same exams twice in one run are duplicates the second time, a refused file
    between them applies nothing, and progress follows the order the files were named in."""
    exams = CASES / "trial" / "clinical_exams.csv"
    again = tmp_path / "again" / exams.name
    broken = tmp_path / "broken" / exams.name
    for folder in (again.parent, broken.parent):
        folder.mkdir()
    shutil.copy(exams, again)
    broken.write_text("record_id,visit\nX,FU1\n")
    seen: list[tuple[str, str]] = []

    with platform(tmp_path / "home") as found:
        outcome = found.ingest(
            STUDY,
            [exams, broken, again],
            on_file=lambda name, result, _s: seen.append((name, type(result).__name__)),
        )

    first, second = outcome.reports
    assert first.accepted > 0
    assert second.accepted == 0 and second.duplicates == first.accepted + first.duplicates
    assert [r.line for r in second.rejected] == [r.line for r in first.rejected]
    assert [r.file for r in outcome.refused] == [exams.name]
    assert seen == [
        (exams.name, "IngestReport"),
        (exams.name, "MissingColumnsError"),
        (exams.name, "IngestReport"),
    ]
    assert len(event_ids(tmp_path / "home", "clinical_exam")) == first.accepted


def test_files_are_read_ahead_only_within_the_memory_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small files are read ahead together; a file that would take the files held over the
    bound waits until they are let go, and one larger than the bound is read alone."""
    files = []
    for name, size in {"a.csv": 10, "b.csv": 10, "big.csv": 100, "c.csv": 10}.items():
        files.append(tmp_path / name)
        files[-1].write_bytes(b"x" * size)
    asked: list[tuple[str, list[str]]] = []  # a file, and the files held when it was asked for
    monkeypatch.setattr(platform_module, "_parse", lambda path, kind: path.name)
    monkeypatch.setattr(platform_module, "READ_AHEAD_BYTES", 25)

    with ThreadPoolExecutor(max_workers=1) as pool:

        class Watched:
            def submit(self, fn: Any, path: Path, kind: str | None) -> Any:
                asked.append((path.name, sorted(files[i].name for i in ahead.held)))
                return pool.submit(fn, path, kind)

        ahead = platform_module._ReadAhead(files, None, Watched())  # type: ignore[arg-type]
        for i, path in enumerate(files):
            assert ahead.take(i) == path.name
            ahead.release(i)

    assert asked == [
        ("a.csv", ["a.csv"]),
        ("b.csv", ["a.csv", "b.csv"]),  # together: 20 bytes of 25
        ("big.csv", ["big.csv"]),  # alone, once a and b were let go: over the bound by itself
        ("c.csv", ["c.csv"]),  # not beside big.csv: 110 bytes
    ]
