"""What every route needs: the app's state, who is signed in, refusals that are audited, and
rendering. A refusal is raised as :class:`AccessRefusedError` after its access event is
recorded, so nothing but that record is ever written for a refused request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from services.roles import PERMISSIONS
from services.signatures import Credentials
from services.users import Session, User, UserStore
from services.web.auth import CookieSigner, tokens_match
from services.web.chairs import Chairs
from services.web.core import Recorder, SerialPlatform
from services.web.errors import AccessRefusedError
from services.web.settings import WebSettings

SESSION_COOKIE = "tract_session"
LOGIN_COOKIE = "tract_login"


@dataclass(frozen=True)
class WebState:
    platform: SerialPlatform
    users: UserStore
    settings: WebSettings
    signer: CookieSigner
    templates: Jinja2Templates
    clock: Callable[[], datetime]
    record: Recorder
    chairs: Chairs


class SignInRequired(Exception):
    """A page asked for by someone not signed in: answered with a redirect to /login."""


class PasswordChangeRequired(Exception):
    """A page asked for by someone signed in with a password an administrator set: answered
    with a redirect to /password, the one page open to them."""


def web(request: Request) -> WebState:
    return request.app.state.web


def client(request: Request) -> str | None:
    return request.client.host if request.client else None


def signing(request: Request, session: Session, password: str) -> Credentials:
    """The signed-in user's credentials for an electronic signature: the password re-entered
    on the page, the session and the client it came from (how it was signed, 11.50)."""
    return Credentials(
        session.username, password, "web", f"web session {session.reference}", client(request)
    )


def session_of(request: Request) -> Session | None:
    """The signed-in person, unless their account in the user store is no longer the one the
    log records (a role raised in the file): then nobody, and signing in again says why."""
    state = web(request)
    token = state.signer.session_token(request.cookies.get(SESSION_COOKIE))
    session = None if token is None else state.users.session(token)
    if session is not None and state.platform.account_problem(state.users, session.username):
        return None
    return session


def viewer(request: Request) -> Session:
    """The signed-in person for a page (GET); anyone else is sent to sign in."""
    session = session_of(request)
    if session is None:
        raise SignInRequired()
    if session.temporary:
        raise PasswordChangeRequired()
    return session


def refuse(
    request: Request,
    who: Session | str | None,
    action: str,
    message: str,
    status_code: int = 403,
    **context: Any,
) -> AccessRefusedError:
    """Record a refusal in the audit trail and return the error to raise."""
    username = who.username if isinstance(who, Session) else (who or "anonymous")
    role = who.role if isinstance(who, Session) else None
    web(request).record(
        who=username,
        role=role,
        action=action,
        outcome="REFUSED",
        detail=message,
        path=request.url.path,
        client=client(request),
        **context,
    )
    return AccessRefusedError(message, status_code)


def allow(request: Request, who: Session | User, action: str, **context: Any) -> None:
    """Record an allowed action in the audit trail (refusals go through :func:`refuse`)."""
    web(request).record(
        who=who.username,
        role=who.role,
        action=action,
        outcome="ALLOWED",
        path=request.url.path,
        client=client(request),
        **context,
    )


OPEN_TO_TEMPORARY = frozenset({"SIGN_OUT", "PASSWORD_CHANGE"})
"""What a session signed in with an administrator's password may post."""


def guard(
    request: Request, csrf_token: str | None, permission: str, action: str, **context: Any
) -> Session:
    """Every POST: signed in, the session's CSRF token posted back, and a role allowed to act."""
    session = session_of(request)
    if session is None:
        raise refuse(request, None, action, "not signed in; sign in first", 401, **context)
    if not tokens_match(session.csrf_token, csrf_token):
        raise refuse(
            request,
            session,
            action,
            "missing or wrong CSRF token; reload the page and submit the form again",
            403,
            **context,
        )
    if session.temporary and action not in OPEN_TO_TEMPORARY:
        raise refuse(
            request,
            session,
            action,
            "your password was set by an administrator: choose your own at /password first",
            403,
            **context,
        )
    if not session.can(permission):
        raise refuse(
            request,
            session,
            action,
            f"role {session.role} may not {permission} (allowed: "
            f"{', '.join(sorted(_roles(permission)))})",
            403,
            **context,
        )
    return session


def _roles(permission: str) -> frozenset[str]:
    return PERMISSIONS[permission]


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    session: Session | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """A page; every page knows who is signed in (for the header and the CSRF token)."""
    state = web(request)
    base = {
        "me": session,
        "chair": session is not None and state.chairs.is_chair(session.username),
        "csrf_token": session.csrf_token if session else None,
        "now": state.clock(),
        "path": request.url.path,
    }
    return state.templates.TemplateResponse(
        request, template, base | context, status_code=status_code
    )


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target, safe='')}"


def secure_cookie(request: Request) -> bool:
    setting = web(request).settings.secure_cookies
    return request.url.scheme == "https" if setting is None else setting


def pick_study(request: Request, requested: str | None) -> tuple[str | None, list[str]]:
    """The study a page is about: the one asked for, else the first one; None when empty."""
    studies = web(request).platform.studies()
    if requested:
        if requested not in studies:
            raise AccessRefusedError(
                f"no study {requested!r}; this platform holds {', '.join(studies) or 'none yet'}",
                404,
            )
        return requested, studies
    return (studies[0] if studies else None), studies
