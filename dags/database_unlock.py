"""
### Database unlock

Undo the lock in force of a study, when the data must change after all. The unlock itself is
decided by signatures, not by this form: a data manager signs an unlock request and two other
people with an approving role (approver or admin) sign their approvals (`tract unlock request`
/ `tract unlock approve`, or the dashboard). Trigger this DAG with the **request id**; the run

1. **check_request**: refuses a request whose signed approvals are not complete, or whose lock
   is no longer in force;
2. **publish_unlock**: writes the unlock record (every signature) beside the lock in the store
   and publishes the UNLOCK event, which the audit trail shows with its requester and approvers.

The last approval normally unlocks at once; this DAG completes an unlock whose last step did
not (a store outage) and is safe to run again. The old lock's files stay in the store
untouched (a hard lock's cannot be removed anyway); the next lock needs a new lock id.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task


@dag(
    schedule=None,
    catchup=False,
    # triggered by people (REST, the UI): a paused DAG would leave their run queued for ever
    is_paused_upon_creation=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["tract", "lock"],
    params={
        "request_id": Param(
            type="string",
            pattern=r"^UR-[0-9a-f]{12}$",
            title="Unlock request id",
            description="The signed unlock request (tract unlock list), its approvals complete.",
        ),
    },
)
def database_unlock() -> None:
    @task(multiple_outputs=False)
    def check_request(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from services.tasks import unlock_check_request

        assert params is not None
        return unlock_check_request(dict(params))

    @task(multiple_outputs=False)
    def publish_unlock(request: dict[str, Any]) -> dict[str, Any]:
        from services.tasks import unlock_publish

        return unlock_publish(request)

    publish_unlock(check_request())


database_unlock()
