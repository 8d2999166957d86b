"""The FastAPI application: ``create_app(platform, settings)`` wires the routes, templates,
static files, security headers and error pages around one platform."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.adjudicator.errors import UnknownConflictError
from services.platform import Platform
from services.users import UserStore
from services.web.auth import CookieSigner
from services.web.chairs import Chairs
from services.web.core import SerialPlatform, recorder
from services.web.deps import (
    PasswordChangeRequired,
    SignInRequired,
    WebState,
    login_url,
    render,
    session_of,
)
from services.web.errors import AccessRefusedError
from services.web.labels import human, meaning, tidy
from services.web.routes import (
    audit,
    conflicts,
    dashboard,
    locks,
    login,
    password,
    queries,
    subjects,
)
from services.web.settings import WebSettings

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    # No scripts at all: every page works with plain forms and links.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Clinical data: never kept in a shared or browser cache.
    "Cache-Control": "no-store",
}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def _ci(interval: list[float] | None) -> str:
    return "n/a" if not interval else f"{100 * interval[0]:.1f}-{100 * interval[1]:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters |= {
        "pct": _pct,
        "ci": _ci,
        "num": _num,
        "human": human,
        "meaning": meaning,
        "tidy": tidy,
    }
    return Jinja2Templates(env=env)


def create_app(
    platform: Platform,
    settings: WebSettings,
    users: UserStore | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """The committee's web page over ``platform`` (embedded log or Kafka alike)."""
    app = FastAPI(
        title="tract: adjudication committee", docs_url=None, redoc_url=None, openapi_url=None
    )
    serial = SerialPlatform(platform)
    users = users or UserStore.from_settings(settings)
    users.unknown_user_hash()  # made now: no sign-in waits for it
    app.state.web = WebState(
        platform=serial,
        users=users,
        settings=settings,
        signer=CookieSigner(settings.secret.reveal()),
        templates=templates(),
        clock=clock or (lambda: datetime.now(UTC)),
        record=recorder(serial),
        chairs=Chairs(users),
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (login, password, dashboard, conflicts, subjects, queries, locks, audit):
        app.include_router(module.router)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[..., Any]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(SignInRequired)
    async def to_sign_in(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(login_url(request), status_code=303)

    @app.exception_handler(PasswordChangeRequired)
    async def to_password(request: Request, exc: PasswordChangeRequired) -> Response:
        return RedirectResponse("/password", status_code=303)

    @app.exception_handler(AccessRefusedError)
    async def refused(request: Request, exc: AccessRefusedError) -> HTMLResponse:
        return _error(request, exc.status_code, "Refused", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        title = "Not found" if exc.status_code == 404 else "Request refused"
        return _error(request, exc.status_code, title, str(exc.detail))

    @app.exception_handler(UnknownConflictError)
    async def unknown(request: Request, exc: UnknownConflictError) -> HTMLResponse:
        return _error(request, 404, "Unknown conflict", str(exc))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _error(request: Request, status_code: int, title: str, message: str) -> HTMLResponse:
    return render(
        request,
        "error.html",
        {"title": title, "message": message, "status_code": status_code},
        session_of(request),
        status_code,
    )
