"""A person's own password: the page where whoever signed in with a password an administrator
set (a new account, a reset) chooses their own before anything else is open to them, and
where anyone may change theirs. The change is recorded in the log as the account's new record
(by ``user:<name>``), so the audit trail shows that the owner, not an administrator, set it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.accounts import chosen_by_owner
from services.errors import UserError
from services.users import MIN_PASSWORD
from services.web.deps import (
    SignInRequired,
    allow,
    client,
    guard,
    refuse,
    render,
    session_of,
    web,
)
from services.web.routes.login import start_session

router = APIRouter()


@router.get("/password", response_class=HTMLResponse)
def password_form(request: Request) -> Response:
    session = session_of(request)
    if session is None:
        raise SignInRequired()
    return render(request, "password.html", {"min_length": MIN_PASSWORD, "error": None}, session)


@router.post("/password")
def change_password(
    request: Request,
    current: Annotated[str, Form()] = "",
    new: Annotated[str, Form()] = "",
    again: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    session = guard(request, csrf_token, "view", "PASSWORD_CHANGE")
    state = web(request)
    try:
        if new != again:
            raise UserError("password not changed: the two new passwords differ")
        user = state.users.change_password(session.username, current, new, client(request))
    except UserError as exc:
        refuse(request, session, "PASSWORD_CHANGE", str(exc), 400)
        context = {"min_length": MIN_PASSWORD, "error": str(exc)}
        return render(request, "password.html", context, session, status_code=400)
    allow(request, user, "PASSWORD_CHANGE")
    state.platform.record(chosen_by_owner(state.users, user.username))
    response = RedirectResponse("/", status_code=303)
    start_session(request, response, user)  # every earlier session ended with the change
    return response
