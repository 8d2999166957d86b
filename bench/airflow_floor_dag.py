"""Airflow's own cost of the database lock's shape, for `bench/lock.py --standalone`: eight
tasks, chained and passing XComs as the lock's do, each doing nothing.

Each task is a new process of the scheduler's LocalExecutor, as each of the lock's is: its
fork, the DAG file parsed again, the Task SDK's calls to the API server (start, XComs read and
pushed, the end). The same scheduler runs it just after the lock; what the lock's tasks take
beyond it is the platform's own work. Not a DAG of the product: the bench puts it beside the
project's DAGs in a folder of its own.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import chain, dag, task

STEPS = 8
"""As many tasks as database_lock runs before its optional export: step_1 ... step_8."""


@dag(dag_id="bench_airflow_floor", schedule=None, catchup=False, is_paused_upon_creation=False)
def bench_airflow_floor() -> None:
    @task(task_id="step_1", multiple_outputs=False)
    def first() -> dict[str, Any]:
        return {"study": "SYN", "request_id": "LR-" + "0" * 16, "existing": False}

    @task(multiple_outputs=False)
    def nothing(request: dict[str, Any]) -> dict[str, Any]:
        return request

    request = first()
    steps = (nothing.override(task_id=f"step_{n}")(request) for n in range(2, STEPS + 1))
    chain(request, *steps)


bench_airflow_floor()
