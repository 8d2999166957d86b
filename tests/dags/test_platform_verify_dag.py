"""platform_verify: `tract verify` every day via dag.test() on SQLite; an edit made by hand in
the home (an outcome, an account) fails the run, naming it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from services.config import Settings
from services.platform import Platform
from services.users import users_file
from tests.dags.conftest import task_states
from tests.store.trials import STUDY

pytestmark = pytest.mark.slow


def test_an_intact_platform_passes(
    dagbag: Any, tract_env: Any, decided_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tract_env(Settings(home=decided_home))
    run = dagbag.get_dag("platform_verify").test(run_conf={})
    assert str(run.state) == "success", task_states(run)
    assert f"state {STUDY}: matches the log" in caplog.text
    assert "verdict: INTACT" in caplog.text


def test_an_outcome_edited_in_the_home_fails_the_run_naming_it(
    dagbag: Any,
    tract_env: Any,
    decided_home: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The edit an insider makes by hand (a tract's outcome in the state's files, shown on the
    page) is found by the next daily run, not only when an auditor thinks of running verify."""
    settings = Settings(home=decided_home)
    tract_env(settings)
    Platform.from_settings(settings).outcomes(STUDY)  # the state caught up
    generation = decided_home / "state" / STUDY
    bucket = sorted((generation / (generation / "CURRENT").read_text()).glob("tracts/*.parquet"))[0]
    frame = pl.read_parquet(bucket)
    bucket.chmod(0o600)
    frame.with_columns(outcome=pl.lit("NOT_CLOSED")).write_parquet(bucket)

    run = dagbag.get_dag("platform_verify").test(run_conf={})
    assert str(run.state) == "failed", task_states(run)
    assert task_states(run) == {"verify": "failed"}
    log = capfd.readouterr()
    text = log.out + log.err + caplog.text
    assert "tract verify: ALTERED" in text
    assert f"({STUDY}, tracts)" in text and "'NOT_CLOSED' in the files" in text


def test_an_account_edited_in_the_user_store_fails_the_run_naming_it(
    dagbag: Any,
    tract_env: Any,
    decided_home: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A member's role lowered (or a password hash replaced) in users.db by hand: the member
    can no longer sign (services/accounts.py), and the next daily run says why."""
    tract_env(Settings(home=decided_home))
    with sqlite3.connect(users_file(decided_home)) as db:
        db.execute("UPDATE users SET role = 'monitor' WHERE username = 'dr.sato'")

    run = dagbag.get_dag("platform_verify").test(run_conf={})
    assert task_states(run) == {"verify": "failed"}
    log = capfd.readouterr()
    text = log.out + log.err + caplog.text
    assert "accounts: 1 of 3 differ from the log's record (signing refused)" in text
    assert "dr.sato's role in the user store differs from the log's record" in text
