"""
### Trial snapshot

Every day (and whenever triggered by hand), write a dated, **unlocked** snapshot of every
study, or of the one named in the `study` param: current outcomes, conflicts (open ones
included), the audit trail and the accepted events, as Parquet with a sha256 manifest under
`snapshots/<study>/<YYYYMMDDTHHMMSSZ>/` in the store. Nothing is retained or checked for
conflicts: this is a working copy for monitoring, not a lock (use `database_lock` for that).

The schedule comes from `TRACT_SNAPSHOT_SCHEDULE` (a cron expression or preset, default
`@daily`). The platform is found through `TRACT_HOME`, `TRACT_STORE` and `TRACT_S3_*`.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import ExceptionRetryPolicy, Param, RetryAction, RetryRule, dag, task

RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(exception="services.errors.TransientError", action=RetryAction.RETRY),
        RetryRule(exception="services.errors.TractError", action=RetryAction.FAIL),
    ]
)


@dag(
    schedule=os.environ.get("TRACT_SNAPSHOT_SCHEDULE", "@daily"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["tract", "snapshot"],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_policy": RETRY_POLICY,
    },
    params={
        "study": Param(
            None,
            type=["null", "string"],
            title="Study",
            description="Only this study (default: every study in the log).",
        )
    },
)
def trial_snapshot() -> None:
    @task
    def list_studies(params: dict[str, Any] | None = None) -> list[str]:
        from services.tasks import snapshot_studies

        return snapshot_studies((params or {}).get("study"))

    @task(multiple_outputs=False)
    def write_snapshot(study: str, dag_run: Any = None) -> dict[str, Any]:
        from services.tasks import snapshot_write

        when = getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)
        return snapshot_write(study, when)

    write_snapshot.expand(study=list_studies())


trial_snapshot()
