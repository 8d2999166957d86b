"""The data manager's real path: `airflow standalone` on SQLite, database_lock triggered
through the REST API by the data manager signed in (the lock names them), the lock written to a
real S3 server, then read on "another machine" (a subprocess that has only the S3 settings) by
the example analysis job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.lock.snapshot import manifest_bytes
from services.platform import Platform
from tests import servers
from tests.dags.conftest import airflow_standalone, compose_scheduler_settings
from tests.signing import lock_request
from tests.store.trials import STUDY, env_of, s3_settings

pytestmark = pytest.mark.slow


def _scheduler(standalone: int | None) -> dict[str, str]:
    """The environment of the `airflow scheduler` process that `airflow standalone` started."""
    import psutil

    assert standalone is not None
    found = []
    for process in psutil.Process(standalone).children(recursive=True):
        try:  # the tasks' processes come and go (some are zombies until reaped)
            if process.cmdline()[-1:] == ["scheduler"]:
                found.append(process.environ())
        except psutil.Error:
            continue
    (scheduler,) = found
    return scheduler


def _get(api: httpx.Client, path: str) -> httpx.Response | None:
    """A poll of the API server: None while it is too busy to answer (standalone serves the
    API from one process on a 2-core machine that is running the lock's tasks)."""
    try:
        return api.get(path)
    except httpx.TimeoutException:
        return None


def test_data_manager_locks_through_the_rest_api_and_an_analyst_reads_s3(
    tmp_path: Path,
    decided_home: Path,
    seaweedfs: servers.S3Server,
    bucket_factory: Callable[..., str],
) -> None:
    settings = s3_settings(decided_home, seaweedfs, bucket_factory("rest"))
    # the data manager signs in as themselves; admin only sets the DAG up
    users = "admin:admin,dm.jones:user"
    with airflow_standalone(tmp_path / "airflow", env_of(settings), users, tmp_path) as airflow:
        api, dm = airflow.client("admin"), airflow.client("dm.jones")
        servers.wait_for(
            lambda: (r := _get(api, "/dags/database_lock")) is not None and r.status_code == 200,
            90,
            "the DAG processor to parse dags/",
            every=1,
        )
        assert api.patch("/dags/database_lock", json={"is_paused": False}).status_code == 200
        # dm.jones signed the lock in tract (password re-entered); the run names the request
        platform = Platform.from_settings(settings)
        signed = lock_request(
            platform, STUDY, "PRIMARY", "hard", open_queries_reason="sites answer later"
        )
        conf = {"study": STUDY, "request_id": signed}  # no requested_by: the signer triggers

        def finished(run_id: str) -> Callable[[], str | None]:
            def state() -> str | None:
                run = _get(api, f"/dags/database_lock/dagRuns/{run_id}")
                state = run and run.json()["state"]
                return state if state in ("success", "failed") else None

            return state

        # admin, naming the data manager's signed request and typing their name, cannot take it
        other = lock_request(platform, STUDY, "TYPED", open_queries_reason="sites answer later")
        typed = conf | {"request_id": other, "requested_by": "dm.jones"}
        forged = {"dag_run_id": "lock-typed", "logical_date": None, "conf": typed}
        assert api.post("/dags/database_lock/dagRuns", json=forged).status_code == 200
        refused = servers.wait_for(finished("lock-typed"), 240, "the typed run to fail", every=1)
        tasks = api.get("/dags/database_lock/dagRuns/lock-typed/taskInstances").json()
        states = {t["task_id"]: t["state"] for t in tasks["task_instances"]}
        assert (refused, states["check_request"]) == ("failed", "failed"), states

        trigger = {"dag_run_id": "lock-primary", "logical_date": None, "conf": conf}
        created = dm.post("/dags/database_lock/dagRuns", json=trigger)
        assert created.status_code == 200, created.text
        assert created.json()["triggering_user_name"] == "dm.jones"
        again = dm.post("/dags/database_lock/dagRuns", json=trigger)
        assert again.status_code == 409  # the run id is an idempotency key
        bad = api.post(
            "/dags/database_lock/dagRuns",
            json={"dag_run_id": "bad", "logical_date": None, "conf": conf | {"request_id": "x"}},
        )
        assert bad.status_code == 400  # the Param schema refuses it before any task runs

        done = servers.wait_for(finished("lock-primary"), 240, "the lock run to finish", every=1)
        assert done == "success", api.get(
            "/dags/database_lock/dagRuns/lock-primary/taskInstances"
        ).json()
        # every task ran in a process forked from a scheduler that had imported them
        log = airflow.server.log_since_start()
        assert "the DAGs' imports preloaded in the scheduler" in log
        # which loops as the deployment's does (docker-compose.yml)
        assert compose_scheduler_settings().items() <= _scheduler(airflow.server.pid).items()

    platform = Platform.from_settings(settings)
    manifest = json.loads(manifest_bytes(platform.store, STUDY, "PRIMARY"))
    assert manifest["requested_by"] == "dm.jones"
    assert manifest["signature"]["printed_name"] == "Dana Jones"  # signed in tract, not Airflow
    published = platform.records("lock", STUDY).collect()
    assert published.select("lock_id", "action", "requested_by").rows() == [
        ("PRIMARY", "CLAIM", "dm.jones"),
        ("PRIMARY", "LOCK", "dm.jones"),
    ]  # and nothing of TYPED

    # Another machine: no platform home, no event log, no Airflow; only the S3 settings.
    analyst = {k: v for k, v in os.environ.items() if not k.startswith(("TRACT_", "AIRFLOW"))}
    analyst |= {k: v for k, v in env_of(settings).items() if k.startswith("TRACT_S3_")}
    (tmp_path / "analyst").mkdir()
    argv = ["-m", "services.analysis.job", "--store", settings.store, "--study", STUDY]
    job = subprocess.run(
        [sys.executable, *argv, "--lock", "PRIMARY"],
        cwd=tmp_path / "analyst",
        env=analyst,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert job.returncode == 0, job.stderr
    assert "every sha256 verified against the manifest" in job.stdout
    assert "FULL_CLOSURE   12   60.0%" in job.stdout
    assert "30 of 43 treated tracts closed" in job.stdout
    assert "identical to the report frozen with the lock" in job.stdout
    assert list((tmp_path / "analyst").iterdir()) == []  # it wrote nothing locally
