"""Site queries: listed per site and subject, exported as CSV for the sites, and answered,
closed or reopened by the data manager (``services/queries.py``)."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated
from urllib.parse import urlencode

import polars as pl
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.errors import TractError
from services.queries import ACTIONS, STATUSES, filter_queries, queries_csv
from services.users import Session
from services.web.deps import allow, guard, pick_study, refuse, render, viewer, web
from services.web.errors import AccessRefusedError
from services.web.visibility import visible

router = APIRouter()
PER_PAGE = 50
SHOWN = ("NOT_CLOSED", *STATUSES, "ALL")


def _filters(request: Request) -> dict[str, str | None]:
    query = request.query_params
    status = (query.get("status") or "NOT_CLOSED").strip().upper()
    if status not in SHOWN:
        raise AccessRefusedError(
            "status must be NOT_CLOSED (open or answered), OPEN, ANSWERED, CLOSED or ALL; "
            f"got {status!r}",
            400,
        )
    return {
        "site": (query.get("site") or "").strip() or None,
        "subject": (query.get("subject") or "").strip().upper() or None,
        "status": status,
    }


def _shown(frame: pl.DataFrame, f: dict[str, str | None]) -> pl.DataFrame:
    status = None if f["status"] == "ALL" else f["status"]
    return filter_queries(frame, site=f["site"], subject=f["subject"], status=status)


def _href(path: str, study: str, f: dict[str, str | None], **changes: object) -> str:
    query = {"study": study} | f | changes
    if query.get("status") == "NOT_CLOSED":
        query["status"] = None
    return path + "?" + urlencode({k: v for k, v in query.items() if v})


@router.get("/queries", response_class=HTMLResponse)
def queries(
    request: Request, session: Annotated[Session, Depends(viewer)], study: str | None = None
) -> HTMLResponse:
    return _page(request, session, study)


def _page(
    request: Request,
    session: Session,
    study: str | None,
    error: str | None = None,
    form: dict[str, object] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    f = _filters(request)
    study, studies = pick_study(request, study)
    context: dict[str, object] = {
        "view": None,
        "filters": f,
        "shown_statuses": SHOWN,
        "error": error,
        "form": form or {"query_ids": [], "note": "", "action": ""},
    }
    if study is not None:
        every = visible(request, session).queries(study)
        rows = _shown(every, f)
        try:
            page = max(1, int(request.query_params.get("page") or 1))
        except ValueError:
            raise AccessRefusedError("page must be a whole number", 400) from None
        pages = max(1, -(-rows.height // PER_PAGE))
        page = min(page, pages)
        by_site = (
            filter_queries(every, status="NOT_CLOSED")
            .group_by(pl.col("site_id").fill_null("unknown site"))
            .agg(
                open=(pl.col("status") == "OPEN").sum(),
                answered=(pl.col("status") == "ANSWERED").sum(),
            )
            .sort("site_id")
            .to_dicts()
        )
        context |= {
            "view": {
                "study": study,
                "studies": studies,
                "rows": rows.slice((page - 1) * PER_PAGE, PER_PAGE).to_dicts(),
                "matching": rows.height,
                "total": every.height,
                "by_site": by_site,
                "sites": sorted(s for s in every["site_id"].unique().to_list() if s),
                "page": page,
                "pages": pages,
                "csv": _href("/queries.csv", study, f),
                "here": _href("/queries", study, f, page=page),
                "actions": ACTIONS,
            },
            "page_href": lambda n: _href("/queries", study, f, page=n),
            "done": request.query_params.get("done"),
        }
    return render(request, "queries.html", context, session, status_code)


@router.get("/queries.csv")
def queries_export(
    request: Request, session: Annotated[Session, Depends(viewer)], study: str | None = None
) -> Response:
    f = _filters(request)
    study, _ = pick_study(request, study)
    if study is None:
        return Response("", media_type="text/csv")
    body = queries_csv(_shown(visible(request, session).queries(study), f))
    allow(request, session, "EXPORT", detail=f"site queries CSV {f}", study=study)
    stamp = web(request).clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    site = f"-{f['site']}" if f["site"] else ""
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="queries-{study}{site}-{stamp}.csv"'
        },
    )


@router.post("/queries/act")
def act(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    study: Annotated[str, Form()] = "",
    query_ids: Annotated[list[str] | None, Form()] = None,
    action: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "/queries",
) -> Response:
    """Record the site's answer, close or reopen the ticked queries (one event each)."""
    session = guard(request, csrf_token, "query", "QUERY", study=study or None)
    pick_study(request, study)
    wanted = [q.strip() for q in query_ids or [] if q.strip()]
    form = {"query_ids": wanted, "note": note, "action": action}
    problem = None
    if not wanted:
        problem = "Tick at least one query in the list."
    elif action not in ACTIONS:
        problem = (
            "Choose what to do with the ticked queries: record the site's answer, close or reopen."
        )
    if problem:
        refuse(request, session, "QUERY", problem, 400, study=study)
        return _page(request, session, study, problem, form, 400)
    platform = web(request).platform
    done = 0
    for query_id in wanted:
        try:
            platform.act_on_query(study, query_id, action, note, session.username)
        except TractError as exc:
            message = f"Query {query_id}: {exc}." + (
                f" The {done} query(ies) before it were recorded." if done else ""
            )
            refuse(request, session, "QUERY", message, 409, study=study)
            return _page(request, session, study, message, form | {"query_ids": wanted[done:]}, 409)
        done += 1
    target = back if back.startswith("/queries") and not back.startswith("//") else "/queries"
    joiner = "&" if "?" in target else "?"
    return RedirectResponse(
        f"{target}{joiner}{urlencode({'done': f'{done}:{action}'})}", status_code=303
    )
