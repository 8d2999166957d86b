"""The conflict queue, the conflict page with its evidence and the committee's votes, and the
two-step vote (form, then a confirmation page where the member signs with their password, then
``Platform.vote``: the same core `tract vote` calls)."""

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
from services.signatures import Credentials, SignatureRefusedError
from services.web.auth import Session
from services.web.deps import client, guard, refuse, render, viewer, web
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
    return render(
        request,
        "conflict.html",
        {
            "view": view,
            "quorum": state.platform.rules.quorum,
            "form": form or {},
            "error": error,
            "recorded": request.query_params.get("recorded"),
            "decided": request.query_params.get("decided"),
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
    """What a vote's access record names: the conflict and its study, subject and tract
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


@router.post("/conflicts/{conflict_id}/decision")
def review_vote(
    request: Request,
    conflict_id: str,
    csrf_token: Annotated[str, Form()] = "",
    study: Annotated[str, Form()] = "",
    status: Annotated[str, Form()] = "",
    maps_to: Annotated[str, Form()] = "",
    rationale: Annotated[str, Form()] = "",
    seen_fingerprint: Annotated[str, Form()] = "",
    seen_decision: Annotated[str, Form()] = "",
) -> Response:
    """Step 1: check the signed-in member's vote as the protocol would, and show what their
    signature will mean, asking for their password. Nobody else's name is on the form: the
    vote is the signed-in member's own."""
    about = _about(request, conflict_id, study)
    session = guard(request, csrf_token, "decide", "VOTE", **about)
    form = {
        "status": status,
        "maps_to": maps_to,
        "rationale": rationale,
        "seen_fingerprint": seen_fingerprint,
        "seen_decision": seen_decision,
    }
    try:
        vote = web(request).platform.vote(
            conflict_id,
            status=status or None,
            rationale=rationale,
            maps_to=maps_to or None,
            study=study or None,
            dry_run=True,
        )
    except UnknownConflictError as exc:
        raise refuse(request, session, "VOTE", str(exc), 404, **about) from None
    except DecisionRefusedError as exc:
        refuse(request, session, "VOTE", str(exc), 400, **about)
        return _conflict_page(request, session, conflict_id, study, form, str(exc), 400)
    return _confirm_page(request, session, vote, study, form)


def _confirm_page(
    request: Request,
    session: Session,
    vote: dict,
    study: str,
    form: dict,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "confirm.html",
        {"vote": vote, "study": study, "form": form, "error": error},
        session,
        status_code,
    )


@router.post("/conflicts/{conflict_id}/decision/confirm")
def sign_vote(
    request: Request,
    conflict_id: str,
    csrf_token: Annotated[str, Form()] = "",
    study: Annotated[str, Form()] = "",
    status: Annotated[str, Form()] = "",
    maps_to: Annotated[str, Form()] = "",
    rationale: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    seen_fingerprint: Annotated[str, Form()] = "",
    seen_decision: Annotated[str, Form()] = "",
) -> Response:
    """Step 2: the member signs with their password (checked again now, and counted by the
    sign-in throttle) and the vote is recorded, unless the evidence or the decision in force
    changed meanwhile."""
    about = _about(request, conflict_id, study)
    session = guard(request, csrf_token, "decide", "VOTE", **about)
    study = about["study"] or study
    state = web(request)
    form = {
        "status": status,
        "maps_to": maps_to,
        "rationale": rationale,
        "seen_fingerprint": seen_fingerprint,
        "seen_decision": seen_decision,
    }
    signed = Credentials(
        session.username, password, "web", f"web session {session.reference}", client(request)
    )
    try:  # one platform call: the check, the signature and the write see the same log
        vote = state.platform.vote(
            conflict_id,
            status=status or None,
            rationale=rationale,
            maps_to=maps_to or None,
            study=study or None,
            credentials=signed,
            directory=state.users,
            seen_fingerprint=seen_fingerprint,
            seen_decision=seen_decision,
        )
    except UnknownConflictError as exc:
        raise refuse(request, session, "VOTE", str(exc), 404, **about) from None
    except SignatureRefusedError as exc:
        refuse(request, session, "VOTE", str(exc), 403, **about)
        try:  # the same vote again, to sign once more
            unsigned = state.platform.vote(
                conflict_id,
                status=status or None,
                rationale=rationale,
                maps_to=maps_to or None,
                study=study or None,
                dry_run=True,
            )
        except DecisionRefusedError:
            return _conflict_page(request, session, conflict_id, study, form, str(exc), 403)
        return _confirm_page(request, session, unsigned, study or "", form, str(exc), 403)
    except DecisionRefusedError as exc:
        code = 409 if isinstance(exc, StaleReviewError) else 400
        refuse(request, session, "VOTE", str(exc), code, **about)
        return _conflict_page(request, session, conflict_id, study, form, str(exc), code)
    decided = (vote.get("decision") or {}).get("decision_id")
    target = urlencode(
        {"study": study, "recorded": vote["vote_id"]} | ({"decided": decided} if decided else {})
    )
    return RedirectResponse(f"/conflicts/{conflict_id}?{target}#votes", status_code=303)
