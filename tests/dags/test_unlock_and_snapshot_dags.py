"""database_unlock (a signed request with its approvals complete, audit trail) and
trial_snapshot (dated, unlocked) via dag.test() on SQLite."""

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
from tests.signing import directory, signed_as
from tests.store.trials import STUDY, s3_settings

pytestmark = pytest.mark.slow


def test_unlock_acts_only_on_a_request_whose_signed_approvals_are_complete(
    dagbag: Any, tract_env: Any, decided_home: Path
) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    settings = Settings(home=decided_home)
    tract_env(settings)
    platform = Platform.from_settings(settings)
    users = directory(decided_home)
    platform.lock(
        STUDY, "PRIMARY", "primary analysis", "dm.jones", open_queries_reason="sites answer later"
    )
    dag = dagbag.get_dag("database_unlock")

    with pytest.raises(ParamValidationError):  # the form takes a request id, not names
        dag.test(run_conf={"requested_by": "dm.jones", "approvers": ["dr.a", "dr.b"]})
    asked = platform.request_unlock(
        STUDY, "PRIMARY", "late MRI reads arrived after the lock", signed_as("dm.jones"), users
    )
    platform.approve_unlock(asked.request_id, signed_as("qa.lee"), users)
    refused = dag.test(run_conf={"request_id": asked.request_id})  # one approval of two
    assert str(refused.state) == "failed"
    assert task_states(refused) == {"check_request": "failed", "publish_unlock": "upstream_failed"}
    assert platform.lock_positions(STUDY) is not None  # still locked

    # the second approval, its unlock left to the DAG (as after a store outage)
    platform.approve_unlock(asked.request_id, signed_as("root.admin"), users, apply=False)
    assert platform.lock_positions(STUDY) is not None
    done = dag.test(run_conf={"request_id": asked.request_id})
    assert str(done.state) == "success", task_states(done)
    assert platform.lock_positions(STUDY) is None
    trail = platform.audit(STUDY).filter(pl.col("kind") == "lock")
    assert trail.select("action", "who", "why").rows()[-1] == (
        "UNLOCK",
        "dm.jones approved by qa.lee, root.admin",
        "late MRI reads arrived after the lock",
    )
    [entry] = list_snapshots(platform.store, STUDY)
    assert (entry.id, entry.status) == ("PRIMARY", "UNLOCKED")  # its files stay
    again = dag.test(run_conf={"request_id": asked.request_id})  # safe to run again
    assert str(again.state) == "success", task_states(again)
    assert platform.audit(STUDY).filter(pl.col("action") == "UNLOCK").height == 1


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
