"""Sign-in and sign-out. The sign-in form carries a token that must match a signed cookie
(no session exists yet to hold one); a new session token is issued at every sign-in.
Failures are throttled by account and client address (``services/throttle.py``); what a stranger
types is logged bounded (``services.audit.bounded``)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.errors import SignInRefusedError
from services.users import User
from services.web.auth import tokens_match
from services.web.deps import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    allow,
    client,
    guard,
    refuse,
    render,
    secure_cookie,
    session_of,
    web,
)

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no //host or scheme), so sign-in cannot redirect elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _login_page(
    request: Request, next_: str, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        {"login_token": token, "next": _safe_next(next_), "error": error},
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        web(request).signer.login_cookie(token),
        httponly=True,
        samesite="lax",
        secure=secure_cookie(request),
        path="/login",
        max_age=3600,
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    if session_of(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_page(request, next)


@router.post("/login")
def sign_in(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    state = web(request)
    expected = state.signer.login_token(request.cookies.get(LOGIN_COOKIE))
    if expected is None or not tokens_match(expected, csrf_token):
        raise refuse(
            request,
            username.strip().lower() or None,
            "SIGN_IN",
            "missing or wrong CSRF token on the sign-in form; reload the page and sign in again",
        )
    try:
        user = state.users.authenticate(username, password, client(request))
    except SignInRefusedError as exc:
        refuse(request, username.strip().lower() or None, "SIGN_IN", exc.reason, 401)
        return _login_page(request, next, str(exc), status_code=401)
    problem = state.platform.account_problem(state.users, user.username)
    if problem:  # changed in the user store's file, not by `tract users` (services/accounts.py)
        message = (
            f"sign-in refused: {problem}. If an administrator made that change, they record "
            f"it with `tract users record {user.username}`"
        )
        refuse(request, user.username, "SIGN_IN", message, 403)
        return _login_page(request, next, message, status_code=403)
    allow(request, user, "SIGN_IN")
    # an administrator's password opens one page: where its owner chooses their own
    response = RedirectResponse(
        "/password" if user.temporary else _safe_next(next), status_code=303
    )
    start_session(request, response, user)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


def start_session(request: Request, response: Response, user: User) -> None:
    """A new session for ``user``, its cookie set on ``response``."""
    state = web(request)
    token = state.users.open_session(user)
    response.set_cookie(
        SESSION_COOKIE,
        state.signer.session_cookie(token),
        httponly=True,
        samesite="lax",
        secure=secure_cookie(request),
        max_age=int(state.settings.session_hours * 3600),
    )


@router.post("/logout")
def sign_out(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    session = guard(request, csrf_token, "view", "SIGN_OUT")
    state = web(request)
    token = state.signer.session_token(request.cookies.get(SESSION_COOKIE))
    if token:
        state.users.close_session(token)
    allow(request, session, "SIGN_OUT")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
