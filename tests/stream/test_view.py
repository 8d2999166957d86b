"""Loss is loud on Kafka, as users see it (the `tract` command, no broker needed to read): a
missing or rebuilding state is refused with what to do (never zeros), and garbage where the
adjudicator's state or the watcher's ledger should be is a clear message, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.stream.applied import AppliedLog
from tests.bus.samples import STUDY, sample_event

TRACT = str(Path(sys.executable).parent / "tract")


def _tract(home: Path, *args: str, bus: str = "kafka://127.0.0.1:1") -> subprocess.CompletedProcess:
    env = os.environ | {"TRACT_HOME": str(home), "TRACT_BUS": bus, "TRACT_KAFKA_APPLY_WAIT_S": "0"}
    return subprocess.run([TRACT, *args], env=env, capture_output=True, text=True, timeout=120)


def _refused(done: subprocess.CompletedProcess, *said: str) -> None:
    assert done.returncode == 1, done.stdout
    assert not done.stdout and "Traceback" not in done.stderr, done.stderr
    for words in said:
        assert words in done.stderr, done.stderr


def _applied(home: Path) -> AppliedLog:
    state = AppliedLog.at(home)
    exams = [sample_event("clinical_exam", i, subject=f"S{i}") for i in range(3)]
    state.apply(exams, {("tract.clinical_exam", 0): 3})
    return state


@pytest.mark.parametrize("command", ["outcomes", "conflicts", "report", "audit"])
def test_no_state_is_said_not_answered_with_zeros(tmp_path: Path, command: str) -> None:
    _refused(
        _tract(tmp_path, command, "--study", STUDY),
        "no applied state",
        "tract adjudicator run",
    )


def test_a_rebuild_under_way_says_how_far(tmp_path: Path) -> None:
    state = _applied(tmp_path)
    state.begin_rebuild({("tract.clinical_exam", 0): 10, ("tract.subject", 0): 4})
    _refused(_tract(tmp_path, "outcomes", "--study", STUDY), "rebuilding: 3 of 14 records applied")
    status = _tract(tmp_path, "adjudicator", "status")
    assert status.returncode == 0 and "rebuilding: 3 of 14 records applied" in status.stdout

    state.end_rebuild()
    done = _tract(tmp_path, "outcomes", "--study", STUDY, "--json")
    assert done.returncode == 0, done.stderr
    assert "not running" in done.stderr  # said: the service has not adjudicated them


def test_garbage_in_the_adjudicators_state_is_a_clear_message(tmp_path: Path) -> None:
    state = _applied(tmp_path)
    index = state.folder / "index.db"
    state.close()
    index.write_bytes(b"this is not SQLite " * 500)
    _refused(_tract(tmp_path, "outcomes", "--study", STUDY), str(index), "damaged")
    verdict = _tract(tmp_path, "verify")  # the auditor's walk names it too
    assert verdict.returncode == 1 and "Traceback" not in verdict.stderr
    assert "verdict: ALTERED" in verdict.stdout and f"{index}: not readable" in verdict.stdout


def test_garbage_in_the_watchers_ledger_is_a_clear_message(tmp_path: Path) -> None:
    ledger = tmp_path / "ingest" / "watch.db"
    ledger.parent.mkdir(parents=True)
    ledger.write_bytes(b"this is not SQLite " * 500)
    done = _tract(
        tmp_path, "ingest", "--study", STUDY, "--watch", str(tmp_path / "drop"), bus="embedded"
    )
    _refused(done, str(ledger), "move the file aside")
