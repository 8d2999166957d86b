"""The conflict queue, the conflict page with its evidence and the committee's votes, the
chair's assignments, and the two-step vote (form, then a confirmation page where the member
signs with their password, then ``Platform.vote``: the same core `tract vote` calls).

The member's last queue (filters, sort, page) travels in the ``tract_queue`` cookie, so the
conflict page can walk to the previous and next conflict of it and back to its page, also
after a vote.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

import polars as pl
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.adjudicator.errors import (
    DecisionRefusedError,
    StaleReviewError,
    UnknownConflictError,
)
from services.assignments import assignment_events, in_force
from services.platform import Platform
from services.signatures import SignatureRefusedError
from services.users import Session
from services.web.deps import guard, refuse, render, secure_cookie, signing, viewer, web
from services.web.errors import AccessRefusedError
from services.web.labels import human
from services.web.queue import QueueFilters, QueueView, conflict_queue, votes_of
from services.web.views import conflict_view
from services.web.visibility import VisiblePlatform, visible

router = APIRouter()
QUEUE_COOKIE = "tract_queue"


def queue_view(
    request: Request, session: Session, filters: QueueFilters, seen: VisiblePlatform
) -> QueueView:
    """The queue of ``filters`` as ``session`` sees it (assignments and votes included)."""
    state = web(request)
    studies = state.platform.studies()
    shown = [s for s in studies if not filters.study or s == filters.study]
    return conflict_queue(
        {s: seen.conflicts(s) for s in shown},
        filters,
        state.clock(),
        state.settings.overdue_days,
        assignments={s: in_force(seen.records("assignment", s).collect()) for s in shown},
        votes={
            s: votes_of(
                seen.records("committee_vote", s).collect(),
                seen.records("committee_decision", s).collect(),
            )
            for s in shown
        },
        viewer=session.username,
        members=state.users.with_role("committee"),
    )


def _remembered(request: Request) -> QueueFilters:
    """The member's last queue (the cookie), or the default one when it cannot be read."""
    try:
        return QueueFilters.from_query(dict(parse_qsl(request.cookies.get(QUEUE_COOKIE, ""))))
    except AccessRefusedError:
        return QueueFilters()


@router.get("/conflicts", response_class=HTMLResponse)
def queue(request: Request, session: Annotated[Session, Depends(viewer)]) -> HTMLResponse:
    filters = QueueFilters.from_query(request.query_params)
    seen = visible(request, session)
    view = queue_view(request, session, filters, seen)
    response = render(
        request,
        "queue.html",
        {
            "view": view,
            "all_studies": web(request).platform.studies(),
            "at": request.query_params.get("at"),
            "assigned": request.query_params.get("assigned_done"),
        },
        session,
    )
    response.set_cookie(
        QUEUE_COOKIE,
        view.filters.query(),
        httponly=True,
        samesite="lax",
        secure=secure_cookie(request),
    )
    return response


def _conflict_page(
    request: Request,
    session: Session,
    conflict_id: str,
    study: str | None,
    form: dict | None = None,
    error: str | None = None,
    status_code: int = 200,
    problems: dict[str, str] | None = None,
) -> HTMLResponse:
    state = web(request)
    seen = visible(request, session)
    view = conflict_view(
        seen,
        conflict_id,
        study or None,
        now=state.clock(),
        overdue_days=state.settings.overdue_days,
        image_url=state.settings.image_url,
    )
    queue = queue_view(request, session, _remembered(request), seen)
    here = next((r for r in queue.ordered if r.conflict_id == conflict_id), None)
    return render(
        request,
        "conflict.html",
        {
            "view": view,
            "step": queue.step(conflict_id, session.username),
            "assignee": here.assignee if here else None,
            "committee": state.users.with_role("committee"),
            "quorum": state.platform.rules.quorum,
            "form": form or {},
            "error": error,
            "problems": problems or {},
            "recorded": request.query_params.get("recorded"),
            "assigned": request.query_params.get("assigned_done"),
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


def form_problems(conflict_type: str, registry: list[str], form: dict) -> dict[str, str]:
    """What is missing or wrong in a vote form, per field, in the reviewer's words (the
    protocol's checks, ``make_decision``, run again behind these)."""
    from services.web.evidence import allowed_statuses

    statuses = allowed_statuses(conflict_type)
    problems: dict[str, str] = {}
    status, maps_to = form["status"], form["maps_to"]
    names = " or ".join(f"“{human(s, 'decision')}”" for s in statuses)
    if not status and not maps_to:
        problems["status"] = f"Choose the final status: {names}."
    elif status and status not in statuses:
        problems["status"] = f"This conflict can only end as {names}."
    if (status == "MAPPED" or (maps_to and not status)) and maps_to not in registry:
        problems["maps_to"] = (
            "Choose the registry tract this evidence belongs to ("
            + (", ".join(registry) or "the subject has no registry tract")
            + ")."
        )
    elif status and status != "MAPPED" and maps_to:
        problems["maps_to"] = (
            f"A registry tract goes with “{human('MAPPED', 'decision')}” only: clear the "
            "registry tract, or choose that status."
        )
    if not form["rationale"].strip():
        problems["rationale"] = (
            "A rationale is required: say why you vote so (it stays in the audit trail "
            "with your signed vote)."
        )
    return problems


def _check_form(
    request: Request, session: Session, conflict_id: str, study: str, form: dict, about: dict
) -> Response | None:
    """The conflict page again with each problem next to its field (and the refusal in the
    audit trail), or None when the form is complete."""
    try:
        _, row, result = web(request).platform.find_conflict(conflict_id, study or None)
    except UnknownConflictError as exc:
        raise refuse(request, session, "VOTE", str(exc), 404, **about) from None
    registry = result.tracts.filter(pl.col("subject_id") == row["subject_id"])["tract_id"]
    problems = form_problems(row["type"], registry.to_list(), form)
    if not problems:
        return None
    refuse(request, session, "VOTE", " ".join(problems.values()), 400, **about)
    return _conflict_page(request, session, conflict_id, study, form, None, 400, problems)


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
    checked = _check_form(request, session, conflict_id, study, form, about)
    if checked is not None:
        return checked
    try:
        vote = _vote(web(request).platform, conflict_id, study, form, dry_run=True)
    except UnknownConflictError as exc:
        raise refuse(request, session, "VOTE", str(exc), 404, **about) from None
    except DecisionRefusedError as exc:
        refuse(request, session, "VOTE", str(exc), 400, **about)
        return _conflict_page(request, session, conflict_id, study, form, str(exc), 400)
    return _confirm_page(request, session, vote, study, form)


def _vote(platform: Platform, conflict_id: str, study: str, form: dict, **signing: Any) -> dict:
    """The form's vote, as the platform checks (``dry_run``) or signs and records it; the
    confirmation page checks exactly what the signature will record."""
    return platform.vote(
        conflict_id,
        status=form["status"] or None,
        rationale=form["rationale"],
        maps_to=form["maps_to"] or None,
        study=study or None,
        **signing,
    )


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
    signed = signing(request, session, password)
    try:  # one platform call: the check, the signature and the write see the same log
        vote = _vote(
            state.platform,
            conflict_id,
            study,
            form,
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
            unsigned = _vote(state.platform, conflict_id, study, form, dry_run=True)
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


@router.post("/conflicts/assign")
def assign(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    conflict_ids: Annotated[list[str] | None, Form()] = None,
    assignee: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "/conflicts",
) -> Response:
    """The chair hands conflicts to a member (an empty assignee takes them back)."""
    session = guard(request, csrf_token, "view", "ASSIGN")
    state = web(request)
    wanted = sorted({c.strip() for c in conflict_ids or [] if c.strip()})
    if not state.chairs.is_chair(session.username):
        raise refuse(
            request,
            session,
            "ASSIGN",
            "only the committee's chair assigns conflicts (an administrator names the chair "
            "with `tract users chair NAME`)",
            403,
        )
    members = state.users.with_role("committee")
    if assignee and assignee not in members:
        raise refuse(
            request, session, "ASSIGN", f"{assignee!r} is not an active committee member", 400
        )
    if not wanted:
        raise refuse(request, session, "ASSIGN", "tick at least one conflict to assign", 400)
    by_study: dict[str, list[dict]] = {}
    for cid in wanted:
        try:
            study, row, _ = state.platform.find_conflict(cid)
        except UnknownConflictError as exc:
            raise refuse(request, session, "ASSIGN", str(exc), 404) from None
        by_study.setdefault(study, []).append(row)
    for study, rows in by_study.items():
        state.platform.publish(assignment_events(study, rows, assignee or None, session.username))
        state.platform.sync_conflicts(study)
    target = back if back.startswith("/conflicts") and not back.startswith("//") else "/conflicts"
    anchor = ""
    if "#" in target:
        target, anchor = target.split("#", 1)
        anchor = f"#{anchor}"
    joiner = "&" if "?" in target else "?"
    done = urlencode({"assigned_done": f"{len(wanted)}:{assignee or '-'}"})
    return RedirectResponse(f"{target}{joiner}{done}{anchor}", status_code=303)
