"""The study dashboard (the report, reader agreement, the swimmer plot, locks) and the lock."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.errors import TractError
from services.web.auth import Session
from services.web.deps import guard, pick_study, refuse, render, viewer, web
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
            "form": form or {},
        },
        session,
        status_code,
    )


@router.get("/", response_class=HTMLResponse)
def dashboard(
    request: Request, session: Annotated[Session, Depends(viewer)], study: str | None = None
) -> HTMLResponse:
    return _page(request, session, study)


@router.post("/lock")
def lock(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    study: Annotated[str, Form()] = "",
    lock_id: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    level: Annotated[str, Form()] = "soft",
) -> Response:
    """Freeze the study; refused for roles other than data manager or admin, and while any
    conflict is open (the platform says which)."""
    session = guard(request, csrf_token, "lock", "LOCK", study=study or None)
    pick_study(request, study)
    try:
        manifest = web(request).platform.lock(
            study, lock_id.strip(), reason, session.username, level
        )
    except TractError as exc:
        refuse(request, session, "LOCK", str(exc), 409, study=study)
        form = {"lock_id": lock_id, "reason": reason, "level": level}
        return _page(request, session, study, str(exc), 409, form)
    target = urlencode({"study": study, "locked": manifest["lock_id"]})
    return RedirectResponse(f"/?{target}", status_code=303)
