"""The subject listing and one subject's page (every tract, visit, read, decision, query)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from services.users import Session
from services.web.deps import pick_study, render, viewer, web
from services.web.subject import SubjectFilters, subject_list, subject_view
from services.web.visibility import visible

router = APIRouter()


@router.get("/subjects", response_class=HTMLResponse)
def subjects(
    request: Request, session: Annotated[Session, Depends(viewer)], study: str | None = None
) -> HTMLResponse:
    filters = SubjectFilters.from_query(request.query_params)
    study, studies = pick_study(request, study)
    view = None
    if study is not None:
        view = subject_list(visible(request, session), study, studies, filters)

    def page_href(page: int) -> str:
        query = {
            "study": study,
            "site": filters.site,
            "status": filters.status,
            "q": filters.search,
            "page": page,
        }
        return "/subjects?" + urlencode({k: v for k, v in query.items() if v})

    return render(
        request,
        "subjects.html",
        {"view": view, "filters": filters, "page_href": page_href},
        session,
    )


@router.get("/subjects/{subject_id}", response_class=HTMLResponse)
def subject(
    request: Request,
    subject_id: str,
    session: Annotated[Session, Depends(viewer)],
    study: str | None = None,
) -> HTMLResponse:
    study, _ = pick_study(request, study)
    if study is None:
        return render(
            request,
            "subjects.html",
            {"view": None, "filters": SubjectFilters(), "page_href": None},
            session,
        )
    view = subject_view(
        visible(request, session), study, subject_id, web(request).settings.image_url
    )
    return render(request, "subject.html", {"view": view}, session)
