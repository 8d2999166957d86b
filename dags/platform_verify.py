"""
### Platform verify

Every day (and whenever triggered by hand), what an auditor runs with `tract verify`: the event
log's hash chain and every segment, every lock the log published (manifest, files, anchor), and
the outcomes' files the web page and `tract outcomes` read, computed afresh from the log and
compared. Every line goes to the task log; the run **fails**, naming the first finding, when
anything does not match, so an edit made by hand in the home or the store is seen the next day,
not at the next lock. Nothing is written.

The schedule comes from `TRACT_VERIFY_SCHEDULE` (a cron expression or preset, default
`@daily`). The platform is found through `TRACT_HOME`, `TRACT_STORE` and `TRACT_S3_*`.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import Param, dag, task


@dag(
    schedule=os.environ.get("TRACT_VERIFY_SCHEDULE", "@daily"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["tract", "audit"],
    params={
        "study": Param(
            None,
            type=["null", "string"],
            title="Study",
            description="Only this study's locks and outcomes (the whole log is walked).",
        )
    },
)
def platform_verify() -> None:
    @task(retries=0, multiple_outputs=False)
    def verify(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from services.tasks import verify_platform

        return verify_platform((params or {}).get("study"))

    verify()


platform_verify()
