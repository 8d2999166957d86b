"""The study dashboard: the report, reader agreement, the swimmer plot, readiness to lock (open
conflicts and site queries), and the lock form (taken in two steps: ``routes/locks.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from services.web.auth import Session
from services.web.deps import pick_study, render, viewer
from services.web.views import dashboard_view
from services.web.visibility import visible

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def dashboard(
    request: Request, session: Annotated[Session, Depends(viewer)], study: str | None = None
) -> HTMLResponse:
    study, studies = pick_study(request, study)
    view = None if study is None else dashboard_view(visible(request, session), study, studies)
    return render(request, "dashboard.html", {"view": view, "form": {}, "problems": {}}, session)
