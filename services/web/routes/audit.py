"""The audit trail page, filterable by subject, user, kind and time, and its CSV export."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.users import Session
from services.web.deps import allow, pick_study, render, viewer, web
from services.web.views import AuditFilters, audit_csv, audit_view
from services.web.visibility import visible

router = APIRouter()


@router.get("/audit", response_class=HTMLResponse)
def audit(
    request: Request, session: Annotated[Session, Depends(viewer)], study: str | None = None
) -> HTMLResponse:
    filters = AuditFilters.from_query(request.query_params)
    study, studies = pick_study(request, study)
    view = None
    if study is not None:
        trail = visible(request, session).audit(study, subject=filters.subject)
        view = audit_view(trail, study, studies, filters)
    return render(request, "audit.html", {"view": view, "filters": filters}, session)


@router.get("/audit.csv")
def audit_export(
    request: Request, session: Annotated[Session, Depends(viewer)], study: str | None = None
) -> Response:
    filters = AuditFilters.from_query(request.query_params)
    study, _ = pick_study(request, study)
    state = web(request)
    if study is None:
        return Response("", media_type="text/csv")
    trail = visible(request, session).audit(study, subject=filters.subject)
    body = audit_csv(trail, filters)
    allow(
        request,
        session,
        "EXPORT",
        detail=f"audit CSV {filters.query() or 'unfiltered'}",
        study=study,
    )
    stamp = state.clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-{study}-{stamp}.csv"'},
    )
