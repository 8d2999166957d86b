"""The study dashboard: the report, reader agreement, the swimmer plot, readiness to lock (open
conflicts and site queries), the lock form (taken in two steps: ``routes/locks.py``), and unlock
by signatures (a data manager's signed request, approvers' signed approvals)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.errors import TractError
from services.users import Session
from services.web.deps import guard, pick_study, refuse, render, signing, viewer, web
from services.web.views import dashboard_view
from services.web.visibility import visible

router = APIRouter()


def _page(
    request: Request,
    session: Session,
    study: str | None,
    error: str | None = None,
    status_code: int = 200,
    form: dict[str, str] | None = None,
    unlock_error: str | None = None,
) -> HTMLResponse:
    study, studies = pick_study(request, study)
    view = None if study is None else dashboard_view(visible(request, session), study, studies)
    return render(
        request,
        "dashboard.html",
        {
            "view": view,
            "error": error,
            "locked": request.query_params.get("locked"),
            "unlocked": request.query_params.get("unlock"),
            "unlock_error": unlock_error,
            "form": form or {},
            "problems": {},
        },
        session,
        status_code,
    )


@router.get("/", response_class=HTMLResponse)
def dashboard(
    request: Request, session: Annotated[Session, Depends(viewer)], study: str | None = None
) -> HTMLResponse:
    return _page(request, session, study)


def _back(back: str) -> str:
    """Where a signed unlock form came from: the dashboard or the lock page, nowhere else."""
    return back if back in ("/", "/locks") else "/"


def _back_page(
    request: Request, session: Session, study: str, back: str, problem: str
) -> HTMLResponse:
    """The page the unlock form was on, again, with the refusal above the form."""
    if _back(back) == "/locks":
        from services.web.routes.locks import locks_page

        return locks_page(request, session, study, unlock_error=problem, status_code=403)
    return _page(request, session, study, status_code=403, unlock_error=problem)


@router.post("/unlock/request")
def request_unlock(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    study: Annotated[str, Form()] = "",
    lock_id: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "/",
) -> Response:
    """A data manager (or admin) signs a request to undo the lock in force."""
    session = guard(request, csrf_token, "request_unlock", "UNLOCK_REQUEST", study=study or None)
    pick_study(request, study)
    state = web(request)
    try:
        asked = state.platform.request_unlock(
            study, lock_id, reason, signing(request, session, password), state.users
        )
    except TractError as exc:
        refuse(request, session, "UNLOCK_REQUEST", str(exc), 403, study=study)
        return _back_page(request, session, study, back, str(exc))
    target = urlencode({"study": study, "unlock": asked.request_id})
    return RedirectResponse(f"{_back(back)}?{target}", status_code=303)


@router.post("/unlock/approve")
def approve_unlock(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    study: Annotated[str, Form()] = "",
    request_id: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "/",
) -> Response:
    """An approver (or admin) signs an approval; the lock is undone once two have."""
    session = guard(request, csrf_token, "approve_unlock", "UNLOCK_APPROVE", study=study or None)
    pick_study(request, study)
    state = web(request)
    try:
        asked, _ = state.platform.approve_unlock(
            request_id, signing(request, session, password), state.users
        )
    except TractError as exc:
        refuse(request, session, "UNLOCK_APPROVE", str(exc), 403, study=study)
        return _back_page(request, session, study, back, str(exc))
    target = urlencode({"study": study, "unlock": asked.request_id})
    return RedirectResponse(f"{_back(back)}?{target}", status_code=303)
