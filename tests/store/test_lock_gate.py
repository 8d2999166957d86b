"""`tract lock --validate` as a data manager runs it (a fresh process, GX imported in the
background while the snapshot is computed): the gate's results kept in the lock, a failing
expectation refusing the lock with the table, column and check it concerns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.lock import gate
from services.lock.validation import SUITE, load_suite
from tests.signing import PASSWORD_LINE, as_data_manager
from tests.store.trials import STUDY

TRACT = str(Path(sys.executable).parent / "tract")


def lock(home: Path, lock_id: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(TRACT, "--home", str(home), "--store", "local", "lock", "--study", STUDY),
            *("--lock-id", lock_id, "--reason", "primary analysis", *as_data_manager(home)),
            *("--level", "soft", "--validate", "--json"),
            *("--open-queries-reason", "the demo's site queries are answered after the lock"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | env,
        input=PASSWORD_LINE,
    )


def test_the_gate_runs_in_the_lock_and_its_results_are_kept(decided_home: Path) -> None:
    done = lock(decided_home, "PRIMARY")
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    expected = sum(len(check["expect"]) for check in load_suite()["checks"])
    assert manifest["validation"] | {"evaluated": expected} == manifest["validation"]
    assert manifest["validation"]["gate"] == "ran"
    assert manifest["validation"]["failed"] == 0
    stored = decided_home / "objects" / "locks" / STUDY / "PRIMARY"
    results = json.loads((stored / "validation.json").read_text())
    assert (results["success"], results["evaluated"], results["failures"]) == (True, expected, [])
    assert yaml.safe_load((stored / "gx_suite.yaml").read_text()) == load_suite()


def test_a_failed_expectation_refuses_the_lock_naming_table_column_and_check(
    decided_home: Path, tmp_path: Path
) -> None:
    suite = yaml.safe_load(SUITE.read_text())
    suite["checks"].append(
        {
            "about": "a suite stricter than the protocol",
            "frame": "patient_outcomes",
            "where": {"subject_status": "COMPLETED"},
            "expect": [
                {
                    "expect_column_values_to_be_in_set": {
                        "column": "category",
                        "value_set": ["FULL_CLOSURE"],
                    }
                },
                {  # a value set read from the snapshot that holds
                    "expect_column_values_to_be_in_set": {
                        "column": "subject_id",
                        "value_set": {"from": "current/subject", "column": "subject_id"},
                    }
                },
            ],
        }
    )
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(suite))

    done = lock(decided_home, "PRIMARY", TRACT_GX_SUITE=str(strict))
    assert done.returncode == 1, done.stdout
    assert "lock refused by the data-quality gate" in done.stderr
    assert "1 failed" in done.stderr
    assert (
        "patient_outcomes where {'subject_status': 'COMPLETED'}: "
        "expect_column_values_to_be_in_set(column=category, value_set=['FULL_CLOSURE']): "
        "8 of 20 rows unexpected" in done.stderr
    )
    assert "[a suite stricter than the protocol]" in done.stderr
    assert not (decided_home / "objects" / "locks" / STUDY / "PRIMARY").exists()


def test_a_background_start_that_fails_is_raised_by_the_gate_not_the_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without GX installed, `tract lock --validate` says so once, from the gate itself."""

    def missing() -> Any:
        raise ModuleNotFoundError("No module named 'great_expectations'")

    reported: list[Any] = []
    monkeypatch.setattr(gate, "_SESSION", [])
    monkeypatch.setattr(gate, "_start", missing)
    monkeypatch.setattr(threading, "excepthook", reported.append)
    gate.preload().join()
    assert reported == []
    with pytest.raises(ModuleNotFoundError, match="great_expectations"):
        gate.session()
