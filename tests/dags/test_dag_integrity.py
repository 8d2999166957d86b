"""Every file in dags/ imports cleanly, with documented DAGs and verb-named tasks."""

from __future__ import annotations

from typing import Any

from tests.dags.conftest import DAGS

EXPECTED = {
    "database_lock": [
        "check_request",
        "check_conflicts",
        "freeze_cut",
        "materialise",
        "validate",
        "write_snapshot",
        "verify_hashes",
        "publish_lock_event",
        "export_submission",
    ],
    "database_unlock": ["check_request", "publish_unlock"],
    "trial_snapshot": ["list_studies", "write_snapshot"],
    "platform_verify": ["verify"],
    "locked_study_analysis": ["read_lock_events", "recompute_tables"],
}


def test_every_dag_imports_without_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == sorted(EXPECTED)


def test_dags_are_documented_and_shaped_as_designed(dagbag: Any) -> None:
    for dag_id, tasks in EXPECTED.items():
        dag = dagbag.get_dag(dag_id)
        assert dag.doc_md and dag.doc_md.strip().startswith("###"), dag_id
        assert [t.task_id for t in _in_order(dag)] == tasks
    lock = dagbag.get_dag("database_lock")
    assert type(lock.timetable).__name__ == "NullTimetable"  # manual only
    assert set(lock.params) == {
        "study",
        "request_id",
        "export",
    }  # a signed lock request: no requested_by, no lock fields the signer did not sign
    assert {t.value for t in lock.allowed_run_types} == {"manual"}  # no backfill, asset, operator
    assert lock.max_active_runs == 1
    daily = dagbag.get_dag("trial_snapshot").timetable
    assert "0 0 * * *" in repr(daily)  # @daily by default


def test_every_task_returns_one_xcom(dagbag: Any) -> None:
    """A task that returns a dict pushes it as one XCom: TaskFlow would otherwise infer
    ``multiple_outputs`` from ``-> dict`` and push each key as well, each a round trip to
    Airflow's API server (25 of them for one lock: ~0.6 s of a warm worker's 5,000-subject lock)."""
    for dag_id in EXPECTED:
        for task in dagbag.get_dag(dag_id).tasks:
            assert task.multiple_outputs is False, f"{dag_id}.{task.task_id}"


def test_parsing_a_dag_imports_no_heavy_library(dagbag: Any) -> None:
    """Heavy imports live inside the tasks: parsing pulls in neither Polars nor GX."""
    import subprocess
    import sys

    code = (
        "import runpy, sys\n"
        "for f in ('database_lock', 'database_unlock', 'trial_snapshot', 'locked_study_analysis',\n"
        "          'platform_verify'):\n"
        "    runpy.run_path(f'dags/{f}.py')\n"
        "heavy = [m for m in ('polars', 'great_expectations', 'minio', 'services.platform')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=DAGS.parent,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _in_order(dag: Any) -> list[Any]:
    ordered, seen = [], set()
    for task in dag.topological_sort():
        if task.task_id not in seen:
            seen.add(task.task_id)
            ordered.append(task)
    return ordered
