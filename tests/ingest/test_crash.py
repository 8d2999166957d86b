"""Crash safety: ``tract ingest`` killed with SIGKILL in the middle of appending a large file,
then run again, ends in exactly the state of one clean run.

The embedded log commits a file's segments (accepted rows, dead letters, the run) in one index
transaction, so the kill leaves all or nothing of the file; event ids come from content, so the
re-run appends nothing twice. The kill happens at named crash points (``TRACT_CRASH_AT``), so
each place a crash can fall is exercised every run, deterministically.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

import schemas

from .helpers import EVIDENCE, STUDY, TRACT, event_ids, payloads, platform, positions

SUBJECTS, TRACTS = 1000, 3
VISITS = schemas.contract("clinical_exam").field("visit").values
CRASH_POINTS = {
    # after the first of the exam file's segments is on disk, before the index knows it
    "segment-written": 0,
    # after all of its segments, before the one index transaction that commits them
    "segments-written": 0,
    # after that commit, before HEAD is written: the file is in; the re-run adds nothing
    "index-committed": 1,
}
"""Where the ingest is killed, and whether the exam file (the first one) must be in after it."""


def _write(path: Path, kind: str, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, schemas.contract(kind).columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_trial(folder: Path) -> tuple[list[Path], int, int]:
    """A large trial: the exam file first (54k rows: every exam and then its correction, some
    bad, some repeated), then the registry. Returns the files and how many exam rows must be
    accepted and rejected."""
    folder.mkdir()
    start = date(2024, 10, 1)
    entered = {"entered_by": "dm.ahmadi", "change_reason": "", "deleted": "N"}
    subjects, tracts, exams = [], [], []
    for s in range(SUBJECTS):
        subject = {"subject_id": f"S{s:05d}", "record_version": 1}
        subjects.append(
            subject
            | entered
            | {"record_id": f"SUBJ-{s}", "site_id": "SITE01", "enrolled_on": start.isoformat()}
            | {"status": "COMPLETED", "entered_at": f"{start}T10:00:00Z"}
        )
        for t in range(1, TRACTS + 1):
            tract = subject | {"tract_id": f"T{t}"}
            tracts.append(
                tract
                | entered
                | {"record_id": f"TR-{s}-{t}", "parks_type": "TRANSSPHINCTERIC", "treated": "Y"}
                | {"external_opening_clock": t, "draining_at_baseline": "Y"}
                | {"entered_at": f"{start}T10:00:00Z"}
            )
            closes = (s + t) % 3 == 0
            for v, visit in enumerate(VISITS):
                day = start + timedelta(days=45 * v)
                closed = closes and v >= len(VISITS) - 2
                bad = (s * TRACTS + t) % 997 == 0 and v == 0
                exams.append(
                    tract
                    | entered
                    | {"record_id": f"EX-{s}-{t}-{visit}", "visit": visit, "exam_date": day}
                    | {"examiner_id": "dr.hadi", "entered_at": f"{day}T12:00:00Z"}
                    | {"external_opening": "CLOSED" if closed else "OPEN"}
                    | {"drains_on_compression": "N" if closed else "Y"}
                    | {"discharge_grade": 9 if bad else 0 if closed else 2}
                )
    corrections = [
        row | {"record_version": 2, "change_reason": "source data verified", "discharge_grade": 1}
        for row in exams
    ]
    exams += corrections
    exams += exams[:: len(exams) // 50][:50]  # exact repeats: duplicates (or rejected again)
    rejected = sum(1 for row in exams if row["discharge_grade"] == 9)
    good = {(r["record_id"], r["record_version"]) for r in exams if r["discharge_grade"] != 9}
    accepted = len(good)
    files = [
        _write(folder / "clinical_exams.csv", "clinical_exam", exams),
        _write(folder / "subjects.csv", "subject", subjects),
        _write(folder / "tracts.csv", "tract", tracts),
    ]
    return files, accepted, rejected


def _command(home: Path, files: list[Path]) -> list[str]:
    return [str(TRACT), "--home", str(home), "ingest", "--study", STUDY, *map(str, files)]


def _kill_at(home: Path, files: list[Path], point: str) -> None:
    """Run the ingest and let it SIGKILL itself at ``point`` of its first append."""
    env = os.environ | {"TRACT_CRASH_AT": point}
    done = subprocess.run(_command(home, files), stdout=subprocess.DEVNULL, env=env, timeout=120)
    assert done.returncode == -signal.SIGKILL, "the ingest did not reach the crash point"


def final_state(home: Path) -> dict[str, Any]:
    """Event ids per topic, outcomes, conflicts and what the runs accepted, per file."""
    with platform(home) as found:
        result = found.adjudicate(STUDY)
    accepted: Counter[str] = Counter()
    for run in payloads(home, "ingest_run"):
        accepted[Path(run["file"]).name] += run["accepted"]
    return {
        "events": {t: event_ids(home, t) for t in (*EVIDENCE, "rejected_row", "conflict_change")},
        "outcomes": result.tracts.select("subject_id", "tract_id", "outcome").rows(),
        "patients": result.patients.select("subject_id", "category").rows(),
        "conflicts": result.conflicts.select("conflict_id", "status", "fingerprint").rows(),
        "accepted": dict(accepted),
    }


@pytest.mark.parametrize("point", sorted(CRASH_POINTS))
def test_sigkill_mid_ingest_then_rerun_equals_one_clean_run(tmp_path: Path, point: str) -> None:
    files, accepted, rejected = write_trial(tmp_path / "files")
    clean_home, crashed_home = tmp_path / "clean", tmp_path / "crashed"
    clean = subprocess.Popen(_command(clean_home, files), stdout=subprocess.DEVNULL)

    _kill_at(crashed_home, files, point)
    after_kill = positions(crashed_home)
    exams = after_kill.get("clinical_exam", 0)
    assert exams in (0, accepted), f"{exams} of {accepted} exams: the file was half applied"
    assert exams == CRASH_POINTS[point] * accepted
    if exams == 0:  # killed inside the append: not one event of the file survived
        assert after_kill == {}

    rerun = subprocess.run(_command(crashed_home, files), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert clean.wait(timeout=120) == 0

    crashed, expected = final_state(crashed_home), final_state(clean_home)
    assert crashed == expected
    assert len(expected["events"]["clinical_exam"]) == accepted
    assert len(expected["events"]["rejected_row"]) == rejected > 0
    assert expected["conflicts"]
