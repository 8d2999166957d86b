"""
### Database unlock

Undo the lock in force of a study, when the data must change after all. Trigger with the
study, the lock id, a reason, who requests it and **two approvers who are not the requester**
(checked again by the platform). The run

1. **check_request**: refuses a missing reason, fewer than two distinct approvers, an approver
   who is the requester, or a lock that does not exist;
2. **publish_unlock**: writes an unlock record beside the lock in the store and publishes the
   UNLOCK event, which the audit trail shows with its approvers.

The old lock's files stay in the store untouched (a hard lock's cannot be removed anyway);
the next lock needs a new lock id.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


@dag(
    schedule=None,
    catchup=False,
    # triggered by people (REST, the UI): a paused DAG would leave their run queued for ever
    is_paused_upon_creation=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["tract", "lock"],
    params={
        "study": Param(type="string", pattern=ID_PATTERN, title="Study"),
        "lock_id": Param(type="string", pattern=ID_PATTERN, title="Lock id to undo"),
        "reason": Param(type="string", minLength=10, title="Reason"),
        "requested_by": Param(type="string", minLength=2, title="Requested by"),
        "approvers": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 2},
            minItems=2,
            uniqueItems=True,
            title="Approvers",
            description="Two people, neither of them the requester.",
        ),
    },
)
def database_unlock() -> None:
    @task
    def check_request(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from services.lock.tasks import unlock_check_request

        assert params is not None
        return unlock_check_request(dict(params))

    @task
    def publish_unlock(request: dict[str, Any]) -> dict[str, Any]:
        from services.lock.tasks import unlock_publish

        return unlock_publish(request)

    publish_unlock(check_request())


database_unlock()
