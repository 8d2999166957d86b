"""database_unlock (two approvers, audit trail) and trial_snapshot (dated, unlocked) via
dag.test() on SQLite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from services.config import Settings
from services.lock.catalog import list_snapshots, open_dated
from services.platform import Platform
from tests.dags.conftest import task_states
from tests.store.trials import STUDY, s3_settings

pytestmark = pytest.mark.slow


def unlock_conf(approvers: list[str]) -> dict[str, Any]:
    return {
        "study": STUDY,
        "lock_id": "PRIMARY",
        "reason": "late MRI reads arrived after the lock",
        "requested_by": "dm.jones",
        "approvers": approvers,
    }


def test_unlock_needs_two_approvers_and_lands_in_the_audit_trail(
    dagbag: Any, tract_env: Any, decided_home: Path
) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    settings = Settings(home=decided_home)
    tract_env(settings)
    platform = Platform.from_settings(settings)
    platform.lock(STUDY, "PRIMARY", "primary analysis", "dm.jones")
    dag = dagbag.get_dag("database_unlock")

    with pytest.raises(ParamValidationError):  # the form refuses a single approver
        dag.test(run_conf=unlock_conf(["dr.a"]))
    refused = dag.test(
        run_conf=unlock_conf(["dm.jones", "dr.a"])
    )  # the platform refuses the requester
    assert str(refused.state) == "failed"
    assert task_states(refused) == {"check_request": "failed", "publish_unlock": "upstream_failed"}
    assert platform.lock_positions(STUDY) is not None  # still locked

    done = dag.test(run_conf=unlock_conf(["dr.a", "dr.b"]))
    assert str(done.state) == "success", task_states(done)
    assert platform.lock_positions(STUDY) is None
    trail = platform.audit(STUDY).filter(pl.col("kind") == "lock")
    assert trail.select("action", "who", "why").rows()[-1] == (
        "UNLOCK",
        "dm.jones approved by dr.a, dr.b",
        "late MRI reads arrived after the lock",
    )
    [entry] = list_snapshots(platform.store, STUDY)
    assert (entry.id, entry.status) == ("PRIMARY", "UNLOCKED")  # its files stay


@pytest.mark.parametrize("where", ["local", "seaweedfs"])
def test_trial_snapshot_writes_a_dated_unlocked_snapshot(
    dagbag: Any,
    tract_env: Any,
    open_home: Path,
    where: str,
    request: pytest.FixtureRequest,
    bucket_factory: Callable[..., str],
) -> None:
    settings = Settings(home=open_home)
    if where == "seaweedfs":
        settings = s3_settings(
            open_home, request.getfixturevalue("seaweedfs"), bucket_factory("snap")
        )
    tract_env(settings)
    run = dagbag.get_dag("trial_snapshot").test(run_conf={})
    assert str(run.state) == "success", task_states(run)
    assert task_states(run) == {"list_studies": "success", "write_snapshot[0]": "success"}
    store = Platform.from_settings(settings).store
    [entry] = list_snapshots(store)
    assert (entry.kind, entry.study, entry.status) == ("snapshot", STUDY, "UNLOCKED_SNAPSHOT")
    snapshot = open_dated(store, STUDY, entry.id)  # verified like a lock
    assert snapshot.tables["conflicts"].filter(pl.col("status") == "OPEN").height > 0
    assert store.list("locks") == []  # a snapshot is not a lock
