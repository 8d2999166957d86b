"""database_lock end to end with dag.test() on SQLite: local folder and a real S3 server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from services.config import Settings
from services.lock.snapshot import manifest_bytes, open_lock
from services.lock.staging import staging_dir
from services.lock.validation import SUITE
from services.platform import Platform
from tests import servers
from tests.dags.conftest import run_as, task_states
from tests.signing import PEOPLE, lock_request
from tests.store.trials import STUDY, s3_settings

pytestmark = pytest.mark.slow

DM = "dm.jones"
"""The data manager who triggers the runs (signed in to Airflow)."""

ALL_TASKS = (
    "check_request",
    "check_conflicts",
    "freeze_cut",
    "materialise",
    "validate",
    "write_snapshot",
    "verify_hashes",
    "publish_lock_event",
)


def conf(settings: Settings, lock_id: str, level: str = "soft", **signed: str) -> dict[str, str]:
    """The run's conf: the study and a lock request DM signed (as `tract lock --for-airflow`)."""
    signed = {"open_queries_reason": "sites answer later"} | signed
    asked = lock_request(Platform.from_settings(settings), STUDY, lock_id, level, **signed)
    return {"study": STUDY, "request_id": asked}


def lock_events(settings: Settings) -> pl.DataFrame:
    """Published lock events (a CLAIM only reserves the id for its request)."""
    events = Platform.from_settings(settings).records("lock", STUDY).collect()
    return events.filter(pl.col("action") != "CLAIM")


@pytest.fixture(params=["local", "seaweedfs"])
def settings(
    request: pytest.FixtureRequest, decided_home: Path, bucket_factory: Callable[..., str]
) -> Settings:
    if request.param == "local":
        return Settings(home=decided_home)
    server: servers.S3Server = request.getfixturevalue("seaweedfs")
    return s3_settings(decided_home, server, bucket_factory("dag"))


def test_lock_runs_end_to_end_and_again_is_idempotent(
    dagbag: Any, tract_env: Any, settings: Settings
) -> None:
    tract_env(settings)
    dag = dagbag.get_dag("database_lock")

    signed = conf(settings, "PRIMARY", "hard")
    run = run_as(dag, DM, run_conf=signed)
    assert str(run.state) == "success", task_states(run)
    assert set(task_states(run).values()) == {"success", "skipped"}
    assert task_states(run)["export_submission"] == "skipped"  # no export asked for
    platform = Platform.from_settings(settings)
    snapshot = open_lock(platform.store, STUDY, "PRIMARY")  # verified against the manifest
    assert snapshot.tables["patient_outcomes"].height == 23
    assert lock_events(settings)["action"].to_list() == ["LOCK"]
    assert not staging_dir(settings.home, STUDY, "PRIMARY").exists()
    manifest = json.loads(manifest_bytes(platform.store, STUDY, "PRIMARY"))
    assert manifest["open_queries"]["reason"] == "sites answer later"  # recorded, not dropped
    assert manifest["requested_by"] == DM  # who triggered the run
    assert lock_events(settings)["requested_by"].to_list() == [DM]

    again = run_as(dag, DM, run_conf=signed)  # the same signed request, triggered again
    states = task_states(again)
    assert str(again.state) == "success", states
    assert [t for t in ALL_TASKS if states[t] == "skipped"] == [
        "check_conflicts",
        "freeze_cut",
        "materialise",
        "validate",
        "write_snapshot",
    ]
    assert lock_events(settings).height == 1  # no second lock
    assert platform.report(STUDY, "PRIMARY")["completers"]["FULL_CLOSURE"] == 12


def test_the_lock_names_who_triggered_the_run_never_a_name_typed_in_its_conf(
    dagbag: Any,
    tract_env: Any,
    decided_home: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The gap: the trigger form took requested_by as free text, so whoever could trigger
    the DAG locked a study under any name (another data manager's)."""
    settings = Settings(home=decided_home)
    tract_env(settings)
    platform = Platform.from_settings(settings)
    dag = dagbag.get_dag("database_lock")

    typed = run_as(dag, DM, run_conf=conf(settings, "PRIMARY") | {"requested_by": "dm.smith"})
    states = task_states(typed)
    assert str(typed.state) == "failed", states
    assert states["check_request"] == "failed"
    assert states["freeze_cut"] == "upstream_failed"
    log = capfd.readouterr()
    text = log.out + log.err + caplog.text
    assert "names requested_by 'dm.smith', but dm.jones triggered it" in text
    assert "Leave requested_by out (the lock names you)" in text
    assert platform.store.list("locks") == []
    assert platform.records("lock", STUDY).collect().is_empty()  # not even a claim

    # the same person, signed in as DM.Jones, sending their own name (an older client)
    own = run_as(dag, "DM.Jones", run_conf=conf(settings, "PRIMARY") | {"requested_by": DM})
    assert str(own.state) == "success", task_states(own)
    manifest = json.loads(manifest_bytes(platform.store, STUDY, "PRIMARY"))
    assert manifest["requested_by"] == DM
    assert lock_events(settings)["requested_by"].to_list() == [DM]
    trail = platform.audit(STUDY).filter(pl.col("action") == "LOCK")
    assert trail["who"].to_list() == [DM]


def test_a_run_no_person_triggered_is_refused_and_writes_nothing(
    dagbag: Any,
    tract_env: Any,
    decided_home: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """dag.test() (as `airflow dags test`) records the user 'dag_test'; a scheduled run none.
    Naming someone in the conf does not make up for it."""
    settings = Settings(home=decided_home)
    tract_env(settings)
    platform = Platform.from_settings(settings)
    dag = dagbag.get_dag("database_lock")
    named = conf(settings, "PRIMARY") | {"requested_by": DM}

    for run in (dag.test(run_conf=named), run_as(dag, None, run_conf=named)):
        states = task_states(run)
        assert str(run.state) == "failed", states
        assert states["check_request"] == "failed"
        assert {states[t] for t in ALL_TASKS[1:]} == {"upstream_failed"}
    log = capfd.readouterr()
    text = log.out + log.err + caplog.text
    assert "this run has no triggering user (Airflow recorded 'dag_test'" in text
    assert "this run has no triggering user (Airflow recorded None" in text
    assert "trigger it as a user: the Airflow UI or the REST API" in text
    assert platform.store.list("locks") == []
    assert platform.records("lock", STUDY).collect().is_empty()
    assert not staging_dir(settings.home, STUDY, "PRIMARY").exists()


def test_open_conflicts_fail_the_run_listing_them(
    dagbag: Any,
    tract_env: Any,
    open_home: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(home=open_home)
    tract_env(settings)
    open_ids = (
        Platform.from_settings(settings)
        .adjudicate(STUDY)
        .conflicts.filter(pl.col("status") == "OPEN")["conflict_id"]
        .to_list()
    )
    run = run_as(dagbag.get_dag("database_lock"), DM, run_conf=conf(settings, "PRIMARY"))
    states = task_states(run)
    assert str(run.state) == "failed"
    assert states["check_conflicts"] == "failed"
    assert states["write_snapshot"] == "upstream_failed"
    log = capfd.readouterr()
    for conflict_id in open_ids:
        assert conflict_id in log.out + log.err + caplog.text
    assert Platform.from_settings(settings).store.list("locks") == []
    assert lock_events(settings).is_empty()


def test_open_site_queries_without_a_reason_fail_the_run(
    dagbag: Any,
    tract_env: Any,
    decided_home: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 13: the DAG locked with open site queries and recorded "no reason given"."""
    settings = Settings(home=decided_home)
    tract_env(settings)
    unexplained = conf(settings, "PRIMARY", open_queries_reason="")
    run = run_as(dagbag.get_dag("database_lock"), DM, run_conf=unexplained)
    states = task_states(run)
    assert str(run.state) == "failed"
    assert states["check_conflicts"] == "failed"
    assert states["freeze_cut"] == "upstream_failed"
    log = capfd.readouterr()
    assert "14 site queries are not closed" in log.out + log.err + caplog.text
    assert "open_queries_reason" in log.out + log.err + caplog.text
    assert Platform.from_settings(settings).store.list("locks") == []
    assert Platform.from_settings(settings).records("lock", STUDY).collect().is_empty()


def test_a_failed_expectation_fails_the_run_and_leaves_no_lock(
    dagbag: Any,
    tract_env: Any,
    decided_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stricter suite (every completer fully closed) must fail on the demo trial."""
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
                }
            ],
        }
    )
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(suite))
    monkeypatch.setenv("TRACT_GX_SUITE", str(strict))
    settings = Settings(home=decided_home)
    tract_env(settings)

    run = run_as(dagbag.get_dag("database_lock"), DM, run_conf=conf(settings, "PRIMARY"))
    states = task_states(run)
    assert str(run.state) == "failed"
    assert states["validate"] == "failed"
    assert states["write_snapshot"] == "upstream_failed"
    log = capfd.readouterr()
    text = log.out + log.err + caplog.text
    assert "GX expectation failed: patient_outcomes" in text
    assert "expect_column_values_to_be_in_set(column=category" in text
    assert "8 of 20 rows unexpected" in text  # 4 improved + 4 resistant completers
    assert Platform.from_settings(settings).store.list("locks") == []
    assert lock_events(settings).is_empty()
    assert not staging_dir(settings.home, STUDY, "PRIMARY").exists()


def test_params_are_validated_by_the_param_schema(
    dagbag: Any, tract_env: Any, decided_home: Path
) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    settings = Settings(home=decided_home)
    tract_env(settings)
    dag = dagbag.get_dag("database_lock")
    for bad in ({"request_id": "PRIMARY"}, {"study": "no spaces allowed"}):
        with pytest.raises(ParamValidationError):
            run_as(dag, DM, run_conf=conf(settings, "PRIMARY") | bad)


def test_the_dag_takes_a_lock_only_as_signed_by_the_person_who_triggers_it(
    dagbag: Any,
    tract_env: Any,
    decided_home: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The gap: a lock the DAG took carried no signature (the CLI's and the page's are
    signed), and its requester was whoever could trigger the DAG. Now the DAG takes a lock
    its requester signed beforehand (password re-entered, in tract), triggered by them."""
    settings = Settings(home=decided_home)
    tract_env(settings)
    platform = Platform.from_settings(settings)
    dag = dagbag.get_dag("database_lock")

    unsigned = run_as(dag, DM, run_conf={"study": STUDY, "request_id": "LR-0123456789abcdef"})
    assert task_states(unsigned)["check_request"] == "failed"
    theirs = conf(settings, "PRIMARY", signer="root.admin")  # signed by another person
    other = run_as(dag, DM, run_conf=theirs)
    assert task_states(other)["check_request"] == "failed"
    log = capfd.readouterr()
    text = log.out + log.err + caplog.text
    assert "no signed lock request 'LR-0123456789abcdef' in study" in text
    assert "is signed by root.admin, but dm.jones triggered this run" in text
    assert platform.store.list("locks") == []
    assert platform.records("lock", STUDY).collect().is_empty()  # not even a claim

    run = run_as(dag, DM, run_conf=conf(settings, "PRIMARY", "hard"))
    assert str(run.state) == "success", task_states(run)
    manifest = json.loads(manifest_bytes(platform.store, STUDY, "PRIMARY"))
    signature = manifest["signature"]
    assert (signature["signer"], signature["printed_name"]) == (DM, PEOPLE[DM][1])
    assert signature["meaning"] == (
        f"locked {STUDY} PRIMARY (hard lock): primary analysis of the completers"
    )
    assert manifest["level"] == "hard"
    trail = platform.audit(STUDY)
    asked = trail.filter(pl.col("kind") == "lock_request")
    assert asked["who"].to_list()[-1].startswith(PEOPLE[DM][1])
    assert trail.filter(pl.col("action") == "LOCK")["who"].to_list() == [DM]


def test_a_request_whose_signer_may_no_longer_lock_is_not_taken(
    dagbag: Any,
    tract_env: Any,
    decided_home: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A data manager signed, then left (removed from tract's users): their Airflow account
    may outlive them, their signed request is not taken."""
    from tests.signing import directory

    settings = Settings(home=decided_home)
    tract_env(settings)
    signed = conf(settings, "PRIMARY")
    directory(decided_home).remove(DM)
    run = run_as(dagbag.get_dag("database_lock"), DM, run_conf=signed)
    assert task_states(run)["check_request"] == "failed"
    log = capfd.readouterr()
    assert "was signed by dm.jones, who may no longer lock (removed" in log.out + log.err + (
        caplog.text
    )
    assert Platform.from_settings(settings).records("lock", STUDY).collect().is_empty()


def test_a_request_not_taken_in_time_is_refused_and_a_new_signature_is_taken(
    dagbag: Any,
    tract_env: Any,
    decided_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A lock signed for the DAG and left waiting is not taken once its time is past (here
    at once: no time at all), and nothing is claimed; signed again (the same request, a new
    signature), it is taken."""
    from datetime import timedelta

    from services.lock import lock

    settings = Settings(home=decided_home)
    tract_env(settings)
    dag = dagbag.get_dag("database_lock")
    signed = conf(settings, "PRIMARY")
    monkeypatch.setattr(lock, "REQUEST_VALID_FOR", timedelta(0))  # signing times are whole s
    run = run_as(dag, DM, run_conf=signed)
    assert task_states(run)["check_request"] == "failed"
    log = capfd.readouterr()
    assert f"lock request {signed['request_id']} was signed at " in log.out + log.err + (
        caplog.text
    )
    assert Platform.from_settings(settings).records("lock", STUDY).collect().is_empty()

    monkeypatch.undo()
    tract_env(settings)
    assert conf(settings, "PRIMARY") == signed  # the same request id, signed anew
    run = run_as(dag, DM, run_conf=signed)
    assert str(run.state) == "success", task_states(run)


def test_a_log_someone_edited_is_not_locked_by_the_dag(
    dagbag: Any,
    tract_env: Any,
    decided_home: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by hand: an exam segment rewritten in the home (keeping its size) was locked by
    the DAG as if nothing happened; `tract verify` said ALTERED only afterwards. freeze_cut now
    refuses before it claims anything."""
    from tests.store.trials import alter_an_exam

    settings = Settings(home=decided_home)
    tract_env(settings)
    signed = conf(settings, "PRIMARY")
    alter_an_exam(decided_home)
    run = run_as(dagbag.get_dag("database_lock"), DM, run_conf=signed)
    assert task_states(run)["freeze_cut"] == "failed"
    log = capfd.readouterr()
    assert "the event log does not verify, so nothing is locked" in log.out + log.err + (
        caplog.text
    )
    assert Platform.from_settings(settings).records("lock", STUDY).collect().is_empty()
