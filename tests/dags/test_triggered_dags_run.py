"""Issue 13: a lock triggered through Airflow's REST API stayed queued, because new DAGs are
paused. The DAGs people trigger are created unpaused; the scheduled ones keep Airflow's default
(the README says how to unpause them)."""

from __future__ import annotations

from typing import Any


def test_the_dags_people_trigger_are_created_unpaused(dagbag: Any) -> None:
    for dag_id in ("database_lock", "database_unlock"):
        assert dagbag.get_dag(dag_id).is_paused_upon_creation is False, dag_id
