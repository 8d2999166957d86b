"""The conflict queue, the conflict page with its evidence, and the two-step decision
(form, then a confirmation page, then ``Platform.decide``: the same core the CLI calls)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.adjudicator.errors import (
    DecisionRefusedError,
    StaleReviewError,
    UnknownConflictError,
)
from services.web.auth import Session
from services.web.deps import guard, refuse, render, viewer, web
from services.web.views import QueueFilters, conflict_queue, conflict_view
from services.web.visibility import visible

router = APIRouter()


@router.get("/conflicts", response_class=HTMLResponse)
def queue(request: Request, session: Annotated[Session, Depends(viewer)]) -> HTMLResponse:
    state = web(request)
    filters = QueueFilters.from_query(request.query_params)
    studies = state.platform.studies()
    seen = visible(request, session)
    frames = {
        s: seen.adjudicate(s).conflicts for s in studies if not filters.study or s == filters.study
    }
    view = conflict_queue(frames, filters, state.clock(), state.settings.overdue_days)
    return render(request, "queue.html", {"view": view, "all_studies": studies}, session)


def _conflict_page(
    request: Request,
    session: Session,
    conflict_id: str,
    study: str | None,
    form: dict | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    state = web(request)
    view = conflict_view(
        visible(request, session),
        conflict_id,
        study or None,
        now=state.clock(),
        overdue_days=state.settings.overdue_days,
    )
    members = state.users.with_role("committee")
    defaults = {"members": [session.username] if session.username in members else []}
    return render(
        request,
        "conflict.html",
        {
            "view": view,
            "committee": members,
            "quorum": state.platform.rules.quorum,
            "form": defaults | (form or {}),
            "error": error,
            "recorded": request.query_params.get("recorded"),
        },
        session,
        status_code,
    )


@router.get("/conflicts/{conflict_id}", response_class=HTMLResponse)
def conflict(
    request: Request,
    conflict_id: str,
    session: Annotated[Session, Depends(viewer)],
    study: str | None = None,
) -> HTMLResponse:
    return _conflict_page(request, session, conflict_id, study)


def _about(request: Request, conflict_id: str, study: str) -> dict[str, str | None]:
    """What a decision's access record names: the conflict and its study, subject and tract
    (so the audit trail finds a refusal by subject)."""
    try:
        found, row, _ = web(request).platform.find_conflict(conflict_id, study or None)
    except UnknownConflictError:
        return {"study": study or None, "conflict_id": conflict_id}
    return {
        "study": found,
        "conflict_id": conflict_id,
        "subject_id": row["subject_id"],
        "tract_id": row["tract_id"],
    }


def _members(members: list[str], other_members: str) -> list[str]:
    extra = [m.strip() for m in other_members.replace(";", ",").split(",")]
    return sorted({m.strip() for m in [*members, *extra] if m.strip()})


@router.post("/conflicts/{conflict_id}/decision")
def review_decision(
    request: Request,
    conflict_id: str,
    csrf_token: Annotated[str, Form()] = "",
    study: Annotated[str, Form()] = "",
    status: Annotated[str, Form()] = "",
    maps_to: Annotated[str, Form()] = "",
    rationale: Annotated[str, Form()] = "",
    members: Annotated[list[str] | None, Form()] = None,
    other_members: Annotated[str, Form()] = "",
    seen_fingerprint: Annotated[str, Form()] = "",
    seen_decision: Annotated[str, Form()] = "",
) -> Response:
    """Step 1: validate the decision as the protocol would, and show it back for confirmation."""
    about = _about(request, conflict_id, study)
    session = guard(request, csrf_token, "decide", "DECIDE", **about)
    chosen = _members(members or [], other_members)
    form = {
        "status": status,
        "maps_to": maps_to,
        "rationale": rationale,
        "members": chosen,
        "seen_fingerprint": seen_fingerprint,
        "seen_decision": seen_decision,
    }
    try:
        decision = web(request).platform.decide(
            conflict_id,
            status=status or None,
            rationale=rationale,
            members=chosen,
            recorded_by=session.username,
            maps_to=maps_to or None,
            study=study or None,
            dry_run=True,
        )
    except UnknownConflictError as exc:
        raise refuse(request, session, "DECIDE", str(exc), 404, **about) from None
    except DecisionRefusedError as exc:
        refuse(request, session, "DECIDE", str(exc), 400, **about)
        return _conflict_page(request, session, conflict_id, study, form, str(exc), 400)
    return render(
        request,
        "confirm.html",
        {"decision": decision, "study": study, "form": form},
        session,
    )


@router.post("/conflicts/{conflict_id}/decision/confirm")
def record_decision(
    request: Request,
    conflict_id: str,
    csrf_token: Annotated[str, Form()] = "",
    study: Annotated[str, Form()] = "",
    status: Annotated[str, Form()] = "",
    maps_to: Annotated[str, Form()] = "",
    rationale: Annotated[str, Form()] = "",
    members: Annotated[list[str] | None, Form()] = None,
    seen_fingerprint: Annotated[str, Form()] = "",
    seen_decision: Annotated[str, Form()] = "",
) -> Response:
    """Step 2: record it, unless the evidence or the decision in force changed meanwhile."""
    about = _about(request, conflict_id, study)
    session = guard(request, csrf_token, "decide", "DECIDE", **about)
    study = about["study"] or study
    try:  # one platform call: the check and the write see the same log
        decision = web(request).platform.decide(
            conflict_id,
            status=status or None,
            rationale=rationale,
            members=members or [],
            recorded_by=session.username,
            maps_to=maps_to or None,
            study=study or None,
            seen_fingerprint=seen_fingerprint,
            seen_decision=seen_decision,
        )
    except UnknownConflictError as exc:
        raise refuse(request, session, "DECIDE", str(exc), 404, **about) from None
    except DecisionRefusedError as exc:
        code = 409 if isinstance(exc, StaleReviewError) else 400
        refuse(request, session, "DECIDE", str(exc), code, **about)
        form = {
            "status": status,
            "maps_to": maps_to,
            "rationale": rationale,
            "members": members or [],
        }
        return _conflict_page(request, session, conflict_id, study, form, str(exc), code)
    target = urlencode({"study": study, "recorded": decision["decision_id"]})
    return RedirectResponse(f"/conflicts/{conflict_id}?{target}", status_code=303)
