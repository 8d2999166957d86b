"""The lock on the page: history (receipt, files, queries open at the lock, unlocks), one
lock's manifest with its report beside the current one, the verified download, and taking a
lock in two steps: what will be frozen (POST /lock), then confirm, signed with the data
manager's password (POST /lock/confirm), as `tract lock --as NAME` signs at the terminal."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.errors import TractError
from services.lock.lock import REQUEST_HOURS, LockRequest, lock_meaning
from services.signatures import LOCK, SignatureRefusedError, sign_as
from services.users import Session
from services.web.deps import allow, guard, pick_study, refuse, render, signing, viewer, web
from services.web.lockview import (
    LockPreview,
    compare_reports,
    lock_files,
    lock_history,
    lock_preview,
)
from services.web.visibility import visible

router = APIRouter()


def _lock_href(study: str, lock_id: str, **extra: str) -> str:
    query = urlencode({"study": study} | extra)
    return f"/locks/{quote(lock_id, safe='')}?{query}"


@router.get("/locks", response_class=HTMLResponse)
def locks(
    request: Request, session: Annotated[Session, Depends(viewer)], study: str | None = None
) -> HTMLResponse:
    return locks_page(request, session, study)


def locks_page(
    request: Request,
    session: Session,
    study: str | None,
    unlock_error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The lock history, the lock form and the signed unlock request and approvals."""
    from services.web.views import dashboard_readiness, lock_requests, unlock_requests

    study, studies = pick_study(request, study)
    seen = visible(request, session)
    context: dict[str, object] = {
        "view": None,
        "form": {},
        "problems": {},
        "unlock_error": unlock_error,
        "unlocked": request.query_params.get("unlock"),
    }
    if study is not None:
        asked = lock_requests(seen, study)
        context["view"] = {
            "study": study,
            "studies": studies,
            "history": lock_history(seen, study),
            "readiness": dashboard_readiness(seen, study),
            "download": seen.sees_everything,
            "unlock_requests": unlock_requests(seen, study),
            "lock_requests": asked,
            "request_hours": REQUEST_HOURS,
            "signed": next(  # the lock request just signed on this page, if it is one
                (r for r in asked if r["request_id"] == request.query_params.get("signed")), None
            ),
        }
    return render(request, "locks.html", context, session, status_code)


@router.get("/locks/{lock_id}", response_class=HTMLResponse)
def lock_detail(
    request: Request,
    lock_id: str,
    session: Annotated[Session, Depends(viewer)],
    study: str | None = None,
) -> HTMLResponse:
    study, _ = pick_study(request, study)
    seen = visible(request, session)
    entry = next((e for e in lock_history(seen, study or "") if e.lock_id == lock_id), None)
    if study is None or entry is None:
        raise refuse(
            request, session, "EXPORT", f"no lock {lock_id!r} in study {study}", 404, study=study
        )
    compared, problem = [], entry.problem
    if entry.state != "claimed" and problem is None:
        try:
            compared = compare_reports(seen.locked_report(study, lock_id), seen.report(study))
        except TractError as exc:
            problem = str(exc)
    return render(
        request,
        "lock.html",
        {
            "study": study,
            "entry": entry,
            "compared": compared,
            "problem": problem,
            "download": seen.sees_everything and entry.state != "claimed" and problem is None,
            "locked": request.query_params.get("locked"),
        },
        session,
    )


@router.get("/locks/{lock_id}/download")
def download(
    request: Request,
    lock_id: str,
    session: Annotated[Session, Depends(viewer)],
    study: str | None = None,
) -> Response:
    """The lock's verified Parquet files and manifest as one zip (roles that see everything)."""
    study, _ = pick_study(request, study)
    if study is None:
        raise refuse(request, session, "EXPORT", "no study yet", 404)
    if not visible(request, session).sees_everything:
        raise refuse(
            request,
            session,
            "EXPORT",
            f"a lock's files hold every event unblinded; role {session.role} may not download "
            "them (data managers, monitors and administrators may)",
            403,
            study=study,
        )
    try:
        data, files = lock_files(web(request).platform, study, lock_id)
    except TractError as exc:
        raise refuse(request, session, "EXPORT", str(exc), 409, study=study) from None
    allow(
        request, session, "EXPORT", detail=f"lock {lock_id}: {files} files, verified", study=study
    )
    stamp = web(request).clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="lock-{study}-{lock_id}-{stamp}.zip"'
        },
    )


def _form(lock_id: str, reason: str, level: str) -> dict[str, str]:
    return {"lock_id": lock_id, "reason": reason, "level": level}


def _meaning(preview: LockPreview, session: Session) -> str:
    """What the data manager's signature will mean (21 CFR 11.50), in the words the manifest
    records: ``locked DEMO PRIMARY (soft lock): primary analysis``."""
    if not preview.lockable:
        return ""
    request = LockRequest(
        preview.study, preview.lock_id, preview.reason, session.username, preview.level
    )
    return lock_meaning(request)


def _confirm_page(
    request: Request,
    session: Session,
    preview: LockPreview,
    queries_reason: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The confirmation page: what will be frozen, and the password field to sign the lock."""
    context = {
        "preview": preview,
        "queries_reason": queries_reason,
        "error": error,
        "meaning": _meaning(preview, session),
        "request_hours": REQUEST_HOURS,
    }
    return render(request, "lock_confirm.html", context, session, status_code)


@router.post("/lock")
def review_lock(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    study: Annotated[str, Form()] = "",
    lock_id: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    level: Annotated[str, Form()] = "soft",
) -> Response:
    """Step 1: what the lock will freeze (counts, open conflicts, site queries, changes since
    the previous lock); nothing is written but a refusal's access record."""
    session = guard(request, csrf_token, "lock", "LOCK", study=study or None)
    pick_study(request, study)
    preview = lock_preview(visible(request, session), study, lock_id, reason, level)
    code = 200 if preview.lockable else 409
    if not preview.lockable:
        refuse(
            request,
            session,
            "LOCK",
            " ".join(preview.problems.values())
            or f"{len(preview.open_conflicts)} open conflict(s)",
            code,
            study=study,
        )
    return _confirm_page(request, session, preview, status_code=code)


@router.post("/lock/confirm")
def take_lock(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    study: Annotated[str, Form()] = "",
    lock_id: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    level: Annotated[str, Form()] = "soft",
    queries_seen: Annotated[str, Form()] = "",
    queries_reason: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    for_airflow: Annotated[str, Form()] = "",
) -> Response:
    """Step 2: lock, signed by the signed-in data manager with their password (checked again
    now, counted by the sign-in throttle), unless something changed since the confirmation page
    or site queries are open without a reason (the reason goes into the lock's manifest).
    ``for_airflow``: sign the same lock for the database_lock DAG to take instead (as `tract
    lock --for-airflow`): nothing is locked yet, and the lock page says what to trigger.

    The signature is the CLI's (`tract lock --as NAME`): purpose LOCK, the session's user as
    both requester and signer, kept in the manifest with ``signed_via`` "web". A refused
    signature (no or wrong password, a role or account that may not sign) claims and writes
    nothing but its REFUSED access record, and the page comes back with the form as it was."""
    session = guard(request, csrf_token, "lock", "LOCK", study=study or None)
    pick_study(request, study)
    state = web(request)
    preview = lock_preview(visible(request, session), study, lock_id, reason, level)
    problem = None
    if not preview.lockable:
        problem = " ".join(preview.problems.values()) or (
            f"{len(preview.open_conflicts)} conflict(s) are open; the committee decides them first"
        )
    elif preview.queries_seen != queries_seen:
        problem = (
            "The site queries changed since you reviewed this lock (a query was answered, "
            "closed or raised); check the list again below, then confirm."
        )
    elif preview.queries and not queries_reason.strip():
        problem = (
            f"{len(preview.queries)} site quer{'y is' if len(preview.queries) == 1 else 'ies are'} "
            "not closed: give the reason for locking with them (it is recorded in the lock), "
            "or close them first."
        )
    if problem:
        refuse(request, session, "LOCK", problem, 409, study=study)
        return _confirm_page(request, session, preview, queries_reason, problem, 409)
    signer = signing(request, session, password)
    lock = (study, preview.lock_id, preview.reason, session.username, level)
    queries = {"open_queries_reason": queries_reason.strip() if preview.queries else ""}
    sign = sign_as(state.platform.signers(state.users), signer, LOCK)
    try:
        if for_airflow:
            asked = state.platform.sign_lock_request(*lock, **queries, sign=sign)
            where = urlencode({"study": study, "signed": asked["request_id"]})
            return RedirectResponse(f"/locks?{where}#asked-h", status_code=303)
        manifest = state.platform.lock(*lock, **queries, sign=sign)
    except SignatureRefusedError as exc:
        refuse(request, session, "LOCK", str(exc), 403, study=study)
        return _confirm_page(request, session, preview, queries_reason, str(exc), 403)
    except TractError as exc:
        refuse(request, session, "LOCK", str(exc), 409, study=study)
        return _confirm_page(request, session, preview, queries_reason, str(exc), 409)
    return RedirectResponse(_lock_href(study, manifest["lock_id"], locked="1"), status_code=303)
