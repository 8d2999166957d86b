"""
### Database lock

A data manager freezes a study: trigger this DAG with the study, a lock id, the level, a
reason and who requests it (the form validates them). The run

1. **check_request**: the lock id again returns the existing lock (nothing new is written);
   an id that was unlocked is refused;
2. **check_conflicts**: fails listing every open conflict (resolve them with the committee);
3. **freeze_cut**: claims the lock id for this request, then records the event-log positions
   the lock covers and the hash chain's head there (its anchor);
4. **materialise**: computes outcomes, conflicts, audit and events at the cut as Parquet in a
   staging folder (conflicts are checked again at the cut);
5. **validate**: the Great Expectations suite in `infra/gx/`; a failure lists the failing
   expectations in the task log and leaves no lock;
6. **write_snapshot**: writes the files, then the manifest, to the store (`TRACT_STORE`; a hard
   lock with COMPLIANCE retention);
7. **verify_hashes**: reads every file back and checks its sha256 against the manifest;
8. **publish_lock_event**: the lock event that the audit trail and `tract report --lock` see.

The platform is found through the environment (`TRACT_HOME`, `TRACT_STORE`, `TRACT_S3_*`).
Store outages are retried; refusals (conflicts, data quality) fail at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import (
    ExceptionRetryPolicy,
    Param,
    RetryAction,
    RetryRule,
    TriggerRule,
    chain,
    dag,
    task,
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(exception="services.errors.TransientError", action=RetryAction.RETRY),
        RetryRule(
            exception="services.errors.TractError",
            action=RetryAction.FAIL,
            reason="refused by the platform: read the message, fix, trigger again",
        ),
    ]
)


@dag(
    schedule=None,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["tract", "lock"],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=20),
        "retry_policy": RETRY_POLICY,
    },
    params={
        "study": Param(type="string", pattern=ID_PATTERN, title="Study", description="e.g. EXO1"),
        "lock_id": Param(
            type="string",
            pattern=ID_PATTERN,
            title="Lock id",
            description="The same id again returns the same lock.",
        ),
        "level": Param(
            "soft",
            enum=["soft", "hard"],
            title="Level",
            description="hard: files retained in COMPLIANCE mode.",
        ),
        "reason": Param(type="string", minLength=10, title="Reason"),
        "requested_by": Param(type="string", minLength=2, title="Requested by"),
    },
)
def database_lock() -> None:
    @task
    def check_request(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from services.adjudicator.tasks import lock_check_request

        assert params is not None
        return lock_check_request(dict(params))

    @task
    def check_conflicts(request: dict[str, Any]) -> dict[str, int]:
        from airflow.sdk.exceptions import AirflowSkipException

        if request["existing"]:
            raise AirflowSkipException(f"lock {request['lock_id']} already exists")
        from services.adjudicator.tasks import lock_check_conflicts

        return lock_check_conflicts(request)

    @task
    def freeze_cut(request: dict[str, Any]) -> dict[str, Any]:
        from services.adjudicator.tasks import lock_freeze_cut

        return lock_freeze_cut(request)

    @task
    def materialise(request: dict[str, Any], cut: dict[str, Any]) -> str:
        from services.adjudicator.tasks import lock_materialise

        return lock_materialise(request, cut)

    @task
    def validate(request: dict[str, Any]) -> dict[str, Any]:
        from services.adjudicator.tasks import lock_validate

        return lock_validate(request)

    @task
    def write_snapshot(request: dict[str, Any]) -> str:
        from services.adjudicator.tasks import lock_write

        return lock_write(request)

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def verify_hashes(request: dict[str, Any]) -> str:
        from services.adjudicator.tasks import lock_verify

        return lock_verify(request)

    @task
    def publish_lock_event(request: dict[str, Any]) -> dict[str, Any]:
        from services.adjudicator.tasks import lock_publish

        return lock_publish(request)

    request = check_request()
    conflicts = check_conflicts(request)
    cut = freeze_cut(request)
    staged = materialise(request, cut)
    checked = validate(request)
    written = write_snapshot(request)
    verified = verify_hashes(request)
    published = publish_lock_event(request)
    chain(request, conflicts, cut, staged, checked, written, verified, published)


database_lock()
