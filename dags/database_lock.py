"""
### Database lock

A data manager freezes a study in two signed steps. First they **sign** the lock at a
terminal: `tract lock --study EXO1 --lock-id PRIMARY --reason "..." --as dm.ana --for-airflow`
(their password, re-entered; 21 CFR 11.50's printed name, time and meaning), which prints a
request id (`LR-...`). Then, signed in to Airflow as themselves, they trigger this DAG with the
study and that request id. **The lock is taken only by the person who signed it**: the run's
triggering user (the UI's or the REST API's signed-in user) must be the request's signer, and
the manifest keeps the signature. Airflow never sees a password. The run

1. **check_request**: refuses a run that no person triggered (a scheduled run, a backfill,
   `airflow dags test`: trigger it as a user, from the UI or the REST API), a request id with
   no signed request, a request signed by someone else, a request signed more than 24 hours
   ago that no run has started (it expired: sign it again), and a conf whose `requested_by`
   names someone else; the lock id again returns the existing lock (nothing new is written);
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
8. **publish_lock_event**: the lock event that the audit trail and `tract report --lock` see,
   and an Airflow asset event per lock: `tract://locks` (every lock), `tract://locks/<study>`
   and `tract://locks/<study>/<lock_id>`, each with the study, lock id, level, store location
   and manifest sha256 as extra; schedule a downstream DAG on one of them
   (`dags/locked_study_analysis.py` is an example);
9. **export_submission** (with `export` set to sdtm, adam or all; skipped for `none`): SDTM,
   ADaM, define.xml and the data dictionary of the verified lock, checked by the conformance
   suite, written once under `exports/<study>/<lock_id>/` in the same store. A conformance error
   fails this task with every finding in its log; the lock itself stands.

The platform is found through the environment (`TRACT_HOME`, `TRACT_STORE`, `TRACT_S3_*`).
Store outages are retried; refusals (conflicts, data quality) fail at once. A task still
running after `TRACT_TASK_LIMIT_MINUTES` (default 60) ends its process, its threads' stacks in
its log, and is retried.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import (
    Asset,
    AssetAlias,
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
LOCKS = Asset(name="tract_locks", uri="tract://locks")
"""Every lock of every study (the event's extra names which); see services.tasks."""
LOCK_ALIAS = AssetAlias("tract_lock")
"""Resolved per run to tract://locks/<study> and tract://locks/<study>/<lock_id>."""
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
    # triggered by people (REST, the UI): a paused DAG would leave their run queued for ever
    is_paused_upon_creation=False,
    # only a person's trigger (UI, REST API): no backfill, asset or operator run
    allowed_run_types=["manual"],
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
        "request_id": Param(
            type="string",
            pattern=r"^LR-[0-9a-f]{16}$",
            title="Signed lock request",
            description="The id `tract lock --for-airflow` printed when you signed the lock "
            "(its lock id, level and reasons are those you signed).",
        ),
        "export": Param(
            "none",
            enum=["none", "sdtm", "adam", "all"],
            title="Submission export",
            description="After the hashes are verified: SDTM, ADaM or both, with define.xml.",
        ),
    },
)
def database_lock() -> None:
    @task(multiple_outputs=False)
    def check_request(params: dict[str, Any] | None = None, dag_run: Any = None) -> dict[str, Any]:
        from services.tasks import lock_check_request

        assert params is not None and dag_run is not None
        return lock_check_request(
            dict(params),
            triggered_by=dag_run.triggering_user_name,
            run_type=dag_run.run_type,
            conf=dag_run.conf,
        )

    @task(multiple_outputs=False)
    def check_conflicts(request: dict[str, Any]) -> dict[str, int]:
        from airflow.sdk.exceptions import AirflowSkipException

        if request["existing"]:
            raise AirflowSkipException(f"lock {request['lock_id']} already exists")
        from services.tasks import lock_check_conflicts

        return lock_check_conflicts(request)

    @task(multiple_outputs=False)
    def freeze_cut(request: dict[str, Any]) -> dict[str, Any]:
        from services.tasks import lock_freeze_cut

        return lock_freeze_cut(request)

    @task
    def materialise(request: dict[str, Any], cut: dict[str, Any]) -> str:
        from services.tasks import lock_materialise

        return lock_materialise(request, cut)

    @task(multiple_outputs=False)
    def validate(request: dict[str, Any]) -> dict[str, Any]:
        from services.tasks import lock_validate

        return lock_validate(request)

    @task
    def write_snapshot(request: dict[str, Any]) -> str:
        from services.tasks import lock_write

        return lock_write(request)

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def verify_hashes(request: dict[str, Any]) -> str:
        from services.tasks import lock_verify

        return lock_verify(request)

    @task(outlets=[LOCKS, LOCK_ALIAS], multiple_outputs=False)
    def publish_lock_event(request: dict[str, Any], *, outlet_events: Any = None) -> dict[str, Any]:
        from services.tasks import lock_asset_events, lock_publish

        payload = lock_publish(request)
        events = lock_asset_events(request["study"], payload)
        outlet_events[LOCKS].extra = events[0][1]
        for uri, extra in events:
            outlet_events[LOCK_ALIAS].add(Asset(name=uri, uri=uri), extra=extra)
        return payload

    @task(multiple_outputs=False)
    def export_submission(
        request: dict[str, Any], params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        what = (params or {}).get("export", "none")
        if what == "none":
            raise AirflowSkipException("no submission export asked for (param export)")
        from services.tasks import lock_export

        return lock_export(request, what)

    request = check_request()
    conflicts = check_conflicts(request)
    cut = freeze_cut(request)
    staged = materialise(request, cut)
    checked = validate(request)
    written = write_snapshot(request)
    verified = verify_hashes(request)
    published = publish_lock_event(request)
    exported = export_submission(request)
    chain(request, conflicts, cut, staged, checked, written, verified, published, exported)


database_lock()
