"""What each DAG task does, as plain functions of small JSON values.

The DAGs in ``dags/`` call one of these per task and stay free of logic; these build the
platform from the environment (``TRACT_HOME``, ``TRACT_STORE``, ``TRACT_S3_*``: the same
settings as the CLI), call the library and return what the next task needs (ids, a cut,
paths, a summary for the task log). They can be tested without Airflow.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from services.config import Settings
from services.watchdog import watchdog

log = logging.getLogger(__name__)


P = ParamSpec("P")
R = TypeVar("R")


def _settings() -> Settings:
    return Settings.from_env()


def _bounded(task: Callable[P, R]) -> Callable[P, R]:
    """``task`` as a DAG runs it: its process ends itself past ``TRACT_TASK_LIMIT_MINUTES``
    (default an hour; 0: no limit), its threads' stacks in the task's log
    (services/watchdog.py), rather than hang the DAG."""

    @functools.wraps(task)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with watchdog(_settings().task_limit_minutes * 60):
            return task(*args, **kwargs)

    return run


def _platform(settings: Settings | None = None) -> Any:
    from services.platform import Platform

    return Platform.from_settings(settings or _settings())


def _sources(settings: Settings | None = None) -> Any:
    """What the lock steps read and write (records, state, store), from the environment."""
    return _platform(settings).lock_sources()


def _request(request: dict[str, Any]) -> Any:
    from services.lock.lock import LockRequest

    return LockRequest(
        **{k: request[k] for k in ("study", "lock_id", "reason", "requested_by", "level")},
        request_id=request.get("request_id", ""),
        open_queries_reason=request.get("open_queries_reason") or "",
    )


def _staging(request: dict[str, Any]) -> Path:
    from services.lock.staging import staging_dir

    return staging_dir(_settings().home, request["study"], request["lock_id"])


# database_lock ------------------------------------------------------------------------------
NO_PERSON = frozenset({"dag_test", "anonymous"})
"""The triggering users Airflow records when no person signed in: ``dag_test`` for
``dag.test()`` and ``airflow dags test``, ``Anonymous`` under the simple auth manager's
``simple_auth_manager_all_admins`` (compared normalised)."""
TRIGGER_AS_A_USER = (
    "trigger it as a user: the Airflow UI or the REST API, signed in as the data manager "
    "who signed the lock request (the lock names who triggered it)"
)


def lock_requester(
    triggered_by: str | None, run_type: str, conf: dict[str, Any] | None = None
) -> str:
    """Who requests a lock the DAG takes: the Airflow user who triggered the run (the UI's or
    the REST API's signed-in user, as Airflow records it on the run), in tract's one form of a
    user name. Never a typed name: a run no person triggered is refused, and so is a conf whose
    ``requested_by`` names anyone else (a lock is never taken in another person's name; the
    same name, sent by an older client, is accepted)."""
    from services.lock.errors import LockRefusedError
    from services.usernames import InvalidNameError, normalise_username

    kind = getattr(run_type, "value", run_type)
    if kind != "manual":
        raise LockRefusedError(
            f"database_lock was not triggered by a person (this is a {kind} run); "
            f"{TRIGGER_AS_A_USER}"
        )
    if not triggered_by or triggered_by.strip().casefold() in NO_PERSON:
        raise LockRefusedError(
            f"this run has no triggering user (Airflow recorded {triggered_by!r}: it records "
            "none for a scheduled run, 'dag_test' for `airflow dags test`, 'Anonymous' when "
            f"sign-in is switched off), so the lock would name nobody; {TRIGGER_AS_A_USER}"
        )
    try:
        requester = normalise_username(triggered_by)
    except InvalidNameError as exc:
        raise LockRefusedError(
            f"the Airflow user who triggered this run cannot name a lock's requester: {exc}; "
            "trigger it as an Airflow user whose name is a tract user name"
        ) from None
    typed = (conf or {}).get("requested_by")
    if typed not in (None, "") and not _names(typed, requester):
        raise LockRefusedError(
            f"the run's conf names requested_by {typed!r}, but {requester} triggered it: a lock "
            "names the Airflow user who triggers it, never a typed name. Leave requested_by "
            f"out (the lock names you), or have {typed} trigger it, signed in as themselves"
        )
    return requester


def _names(typed: Any, requester: str) -> bool:
    """Whether ``typed`` is ``requester``'s user name (any name that is not one is not)."""
    from services.usernames import InvalidNameError, normalise_username

    try:
        return normalise_username(typed) == requester
    except InvalidNameError:
        return False


@_bounded
def lock_check_request(
    params: dict[str, Any],
    *,
    triggered_by: str | None,
    run_type: str,
    conf: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The signed lock request the run names (``request_id``: signed with `tract lock
    --for-airflow`), taken only by the person who signed it (:func:`lock_requester`: the
    run's triggering user) while they may still lock and within its time
    (:data:`~services.lock.lock.REQUEST_VALID_FOR`), checked, with its ``signature`` (for the
    manifest) and ``existing`` set when this lock id was already written."""
    from services.lock.errors import LockRefusedError
    from services.lock.lock import check_in_time, check_request, signed_lock_request

    requester = lock_requester(triggered_by, run_type, conf)
    sources = _sources()
    request, signature = signed_lock_request(sources, params["study"], params["request_id"])
    if signature["signer"] != requester:
        raise LockRefusedError(
            f"lock request {request.request_id} is signed by {signature['signer']}, but "
            f"{requester} triggered this run: a signed request is taken only by the person "
            f"who signed it ({signature['signer']}, signed in to Airflow)"
        )
    _may_still_lock(signature["signer"], request.request_id)
    check_in_time(sources, request, signature["signed_at"])
    existing = check_request(sources, request)
    if existing is not None:
        log.info(
            "lock %s of %s already exists (locked %s by %s): nothing new will be written",
            request.lock_id,
            request.study,
            existing["locked_at"],
            existing["requested_by"],
        )
    return request.to_dict() | {"existing": existing is not None, "signature": signature}


def _may_still_lock(signer: str, request_id: str) -> None:
    """Refuse a request whose signer is no longer a tract user who may lock (removed, or their
    role changed since they signed): a signature is not taken up by the DAG once its signer
    has lost the right to make it."""
    from services.errors import UserError
    from services.lock.errors import LockRefusedError
    from services.signatures import LOCK, SIGNING_ROLES
    from services.users import UserStore

    users = UserStore.for_home(_settings().home)
    try:
        user = users.user(signer)
    except UserError:
        user = None
    if user is None or not user.active or user.role not in SIGNING_ROLES[LOCK]:
        now = "removed" if user is None or not user.active else f"now {user.role}"
        raise LockRefusedError(
            f"lock request {request_id} was signed by {signer}, who may no longer lock "
            f"({now} in tract's users): a data manager signs a new request "
            "(`tract lock ... --for-airflow`)"
        )


@_bounded
def lock_check_conflicts(request: dict[str, Any]) -> dict[str, int]:
    """Refuse while a conflict is open, or site queries are not closed and the request gives
    no reason for locking with them."""
    from services.lock.lock import check_ready

    ready = check_ready(_sources(), _request(request))
    counts, pending = ready["conflicts"], ready["open_queries"]
    log.info("no open conflicts in %s (%s)", request["study"], counts or "none at all")
    if pending["not_closed"]:
        log.info(
            "%d site queries not closed; locking with them because: %s",
            pending["not_closed"],
            pending["reason"],
        )
    return counts


@_bounded
def lock_freeze_cut(request: dict[str, Any] | None = None) -> dict[str, Any]:
    """Claim the lock id for this request, then the cut (log positions) and the chain head
    there (the lock's anchor in the log)."""
    from services.lock.lock import freeze_cut

    cut = freeze_cut(_sources(), _request(request) if request else None)
    log.info("cut frozen at log positions %s (chain %s)", cut["positions"], cut["chain"])
    return cut


@_bounded
def lock_materialise(request: dict[str, Any], cut: dict[str, Any]) -> str:
    from services.lock.lock import materialise

    settings = _settings()
    staging = materialise(
        _sources(settings),
        _request(request),
        cut,
        _staging(request),
        settings.hard_lock_retention_days,
        request.get("signature"),
    )
    log.info("staged %s", staging)
    return str(staging)


@_bounded
def lock_validate(request: dict[str, Any]) -> dict[str, Any]:
    """The GX gate; on failure every failing expectation goes to the task log, then it raises."""
    from services.lock.errors import ValidationFailedError
    from services.lock.gate import preload
    from services.lock.validation import (
        load_suite,
        record_validation,
        staged_frames,
        validate_frames,
    )

    preload()  # GX's import overlaps with reading (and hashing) the staged files
    suite = load_suite()
    frames, manifest = staged_frames(_staging(request))
    report = validate_frames(frames, manifest, suite)
    for failure in report.failures:
        log.error("GX expectation failed: %s", failure)
    log.info("%s", report.summary())
    try:
        report.raise_on_failure()
    except ValidationFailedError:
        from services.lock.staging import discard_staging

        discard_staging(_staging(request))
        raise
    record_validation(_staging(request), report, suite)  # the lock keeps what the gate found
    return {"evaluated": report.evaluated, "failed": len(report.failures)}


@_bounded
def lock_write(request: dict[str, Any]) -> str:
    from services.lock.lock import write_lock

    where = write_lock(_sources(), request["study"], request["lock_id"], _staging(request))
    log.info("wrote %s (%s lock)", where, request["level"])
    return where


@_bounded
def lock_verify(request: dict[str, Any]) -> str:
    from services.lock.lock import verify_lock

    staging = _staging(request)
    digest = verify_lock(
        _sources(), request["study"], request["lock_id"], staging if staging.exists() else None
    )
    log.info("every file matches the manifest (manifest sha256 %s)", digest)
    return digest


@_bounded
def lock_publish(request: dict[str, Any]) -> dict[str, Any]:
    from services.lock.lock import publish_lock
    from services.lock.staging import discard_staging

    payload = publish_lock(_sources(), request["study"], request["lock_id"])
    discard_staging(_staging(request))
    log.info("lock event published: %s", payload)
    return payload


# database_unlock ----------------------------------------------------------------------------
@_bounded
def unlock_check_request(params: dict[str, Any]) -> dict[str, Any]:
    """The unlock request named by the run, which must have its signed approvals complete
    (an already completed unlock passes: publishing it again adds nothing)."""
    from services.lock.errors import LockRefusedError
    from services.lock.unlock import CLOSED, PENDING, find_request

    asked = find_request(_sources(), params["request_id"])
    if asked.state == PENDING:
        raise LockRefusedError(
            f"unlock request {asked.request_id} has {len(asked.approvers)} of its "
            f"{asked.missing + len(asked.approvers)} signed approvals; nothing is unlocked "
            "until each approver signs (`tract unlock approve` or the dashboard)"
        )
    if asked.state == CLOSED:
        raise LockRefusedError(
            f"unlock request {asked.request_id}: lock {asked.lock_id} of {asked.study} is no "
            "longer in force; nothing to unlock"
        )
    log.info("unlock request %s: requested %s", asked.request_id, asked.requested)
    for approval in asked.approvals:
        log.info("approved %s", approval)
    return {
        "request_id": asked.request_id,
        "study": asked.study,
        "lock_id": asked.lock_id,
        "state": asked.state,
    }


@_bounded
def unlock_publish(request: dict[str, Any]) -> dict[str, Any]:
    record = _platform().apply_unlock(request["request_id"])
    log.info("unlock recorded: %s", record)
    return record


# trial_snapshot -----------------------------------------------------------------------------
@_bounded
def snapshot_studies(only: str | None = None) -> list[str]:
    studies = _platform().studies()
    return [s for s in studies if not only or s == only]


@_bounded
def snapshot_write(study: str, when: str | datetime | None = None) -> dict[str, Any]:
    """A dated snapshot of ``study``; ``when`` (the run's date) names it."""
    from services.lock.catalog import stamp_of, write_dated_snapshot

    moment = datetime.fromisoformat(when) if isinstance(when, str) else (when or datetime.now(UTC))
    manifest = write_dated_snapshot(_sources(), study, stamp_of(moment.astimezone(UTC)))
    log.info(
        "snapshot %s of %s: %d files, %d open conflicts",
        manifest["snapshot"],
        study,
        len(manifest["files"]),
        manifest["open_conflicts"],
    )
    return {
        "study": study,
        "snapshot": manifest["snapshot"],
        "files": len(manifest["files"]),
        "open_conflicts": manifest["open_conflicts"],
    }


# platform_verify ----------------------------------------------------------------------------
@_bounded
def verify_platform(study: str | None = None) -> dict[str, Any]:
    """`tract verify` on a schedule: the chain, every segment, every lock and the outcomes'
    files against the log, every line in the task log; the run fails (no retry: it would find
    the same) naming the first finding when anything does not match."""
    from services.lock.errors import LogAlteredError
    from services.verify import verify_platform_home

    settings = _settings()
    verdict = verify_platform_home(settings, _platform(settings), study)
    for line in verdict.text().splitlines():
        (log.info if verdict.intact else log.error)("%s", line)
    if not verdict.intact:
        found = len(verdict.log.findings) + len(verdict.findings)
        raise LogAlteredError(
            f"tract verify: ALTERED ({found} finding(s), each in this task's log); first: "
            f"{verdict.first()}. Keep the home and the store as they are and run `tract verify` "
            "on a copy to see them all"
        )
    return {
        "verdict": "INTACT",
        "head": f"{verdict.log.head_seq}:{verdict.log.head_hash}",
        "locks": len(verdict.locks),
        "state": verdict.states,
    }


# submission export and downstream triggers --------------------------------------------------
LOCKS_ASSET = "tract://locks"
"""The asset every lock updates (its events say which study and lock); a per-study and a
per-lock asset (``tract://locks/<study>``, ``tract://locks/<study>/<lock_id>``) come with it."""


@_bounded
def lock_export(request: dict[str, Any], what: str) -> dict[str, Any]:
    """The submission package of the verified lock (``what``: sdtm, adam or all), written once
    under ``exports/<study>/<lock_id>/`` in the lock's store; a conformance error fails the task
    with every finding in the log, and the lock stands."""
    from services.export.errors import ConformanceError
    from services.export.package import KINDS, export_lock

    try:
        result = export_lock(
            _platform().store,
            request["study"],
            request["lock_id"],
            kinds=KINDS if what == "all" else (what,),
        )
    except ConformanceError as exc:
        for finding in exc.findings:
            log.error("conformance: %s", finding)
        raise
    for warning in result.warnings:
        log.warning("conformance: %s", warning)
    log.info("%s", result.summary())
    return {
        "location": result.where,
        "files": len(result.manifest["files"]),
        "records": result.manifest["records"],
        "warnings": len(result.warnings),
    }


@_bounded
def lock_asset_events(study: str, payload: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The per-study and per-lock asset URIs a published lock updates, and the extra every
    event carries (from the lock event's payload: lock id, level, store location, sha256)."""
    lock_id = payload["lock_id"]
    extra = {
        "study": study,
        "lock_id": lock_id,
        "level": payload["level"],
        "locked_at": payload["at"],
        "location": payload["location"],
        "manifest_sha256": payload["manifest_sha256"],
        "uri": f"{LOCKS_ASSET}/{study}/{lock_id}",
    }
    return [(f"{LOCKS_ASSET}/{study}", extra), (f"{LOCKS_ASSET}/{study}/{lock_id}", extra)]


@_bounded
def analyse_lock(event: dict[str, Any]) -> dict[str, Any]:
    """Downstream of a lock: open it verified and recompute its tables (the analysis job)."""
    from services.analysis.job import run_job

    result = run_job(_settings(), event["study"], event["lock_id"])
    log.info(
        "lock %s of %s at %s: tables %s",
        result.lock_id,
        result.study,
        result.location,
        "reproduced" if result.reproduced else "DIFFER from the frozen report",
    )
    if not result.reproduced:
        from services.errors import TractError

        raise TractError(
            f"lock {result.lock_id} of {result.study}: the recomputed tables differ from its "
            "report.json; do not use this lock until the platform team has looked at it"
        )
    return {
        "study": result.study,
        "lock_id": result.lock_id,
        "reproduced": result.reproduced,
        "completers": result.report["completers"]["n"],
        "full_closure": result.report["completers"]["FULL_CLOSURE"],
    }
