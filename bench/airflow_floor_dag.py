"""Airflow's own cost of the database lock's shape, for `bench/lock.py --standalone`: the
lock's eight tasks, chained and passing XComs as the lock's do, each doing nothing.

Each task is a new process of the scheduler's LocalExecutor, as each of the lock's is: its
fork, the DAG file parsed again, the Task SDK's calls to the API server (start, XComs read and
pushed, the end). The same scheduler runs it just after the lock; what the lock's tasks take
beyond it is the platform's own work. Not a DAG of the product: the bench puts it beside the
project's DAGs in a folder of its own.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import chain, dag, task

TASKS = (
    "check_request",
    "check_conflicts",
    "freeze_cut",
    "materialise",
    "validate",
    "write_snapshot",
    "verify_hashes",
    "publish_lock_event",
)


@dag(dag_id="bench_airflow_floor", schedule=None, catchup=False, is_paused_upon_creation=False)
def bench_airflow_floor() -> None:
    @task(multiple_outputs=False)
    def first() -> dict[str, Any]:
        return {"study": "SYN", "request_id": "LR-" + "0" * 16, "existing": False}

    def step(name: str) -> Any:
        @task(task_id=name, multiple_outputs=False)
        def nothing(request: dict[str, Any]) -> dict[str, Any]:
            return request

        return nothing

    request = first.override(task_id=TASKS[0])()
    chain(request, *(step(name)(request) for name in TASKS[1:]))


bench_airflow_floor()
