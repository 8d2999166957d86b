"""``tract serve`` and ``tract users``: the web page's commands, registered in services/cli.py.

Heavy imports (FastAPI, uvicorn) happen inside the commands, so ``tract --help`` stays quick.
"""

from __future__ import annotations

import getpass
import json
from typing import Any

import click

from services.web.roles import ROLES


def _store(obj: Any) -> Any:
    from services.web.auth import UserStore
    from services.web.settings import WebSettings

    return UserStore.from_settings(WebSettings.from_env(obj.home))


def _record(obj: Any, action: str, detail: str) -> None:
    """User changes land in the audit trail, attributed to the operating-system account."""
    from services.web.core import access_event

    who = f"cli:{getpass.getuser()}"
    obj.platform.bus.publish(
        [access_event(who=who, role=None, action=action, outcome="ALLOWED", detail=detail)]
    )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--proxy-headers",
    is_flag=True,
    help="Trust X-Forwarded-Proto/For from a TLS proxy in front (secure cookies follow https); "
    "the proxy's address must be 127.0.0.1 or listed in $FORWARDED_ALLOW_IPS.",
)
@click.pass_obj
def serve(obj: Any, host: str, port: int, proxy_headers: bool) -> None:
    """Serve the adjudication committee's web page (sign in at /login).

    Uses the same home and bus as every other command (--home, --bus), so it serves the
    embedded log or Kafka alike. Settings: TRACT_WEB_OVERDUE_DAYS (default 14),
    TRACT_WEB_SECRET (default: generated once under <home>/web/secret),
    TRACT_WEB_SECURE_COOKIES (auto, 1 or 0), TRACT_WEB_SESSION_HOURS (default 12).
    """
    import uvicorn

    from services.web.app import create_app
    from services.web.settings import WebSettings

    settings = WebSettings.from_env(obj.home)
    app = create_app(obj.platform, settings)
    if not app.state.web.users.users():
        click.secho(
            "no users yet: add one with `tract users add NAME --role committee` "
            f"(roles: {', '.join(ROLES)})",
            fg="yellow",
            err=True,
        )
    click.echo(
        f"serving {obj.home} (bus {obj.settings.bus}) on http://{host}:{port}/ ; stop with Ctrl-C"
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=proxy_headers,  # trusted from 127.0.0.1, or $FORWARDED_ALLOW_IPS
        log_level="info",
    )


@click.group()
def users() -> None:
    """Manage who can sign in to the web page (kept in <home>/web/users.db)."""


@users.command("add")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the user may do.")
@click.option("--password", help="The password (prompted, hidden, when omitted).")
@click.pass_obj
def add(obj: Any, username: str, role: str, password: str | None) -> None:
    """Add a user (or bring a removed one back) with a role and a password."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = _store(obj).add(username, role, password)
    _record(obj, "USER_ADD", f"{user.username} as {user.role}")
    click.echo(f"added {user.username} ({user.role})")


@users.command("passwd")
@click.argument("username")
@click.option("--password", help="The new password (prompted, hidden, when omitted).")
@click.pass_obj
def passwd(obj: Any, username: str, password: str | None) -> None:
    """Set a new password; the user's open sessions end."""
    if password is None:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    user = _store(obj).set_password(username, password)
    _record(obj, "USER_PASSWORD", f"new password for {user.username}")
    click.echo(f"password changed for {user.username}")


@users.command("remove")
@click.argument("username")
@click.pass_obj
def remove(obj: Any, username: str) -> None:
    """Deactivate a user and end their sessions (the name stays reserved for the audit trail)."""
    user = _store(obj).remove(username)
    _record(obj, "USER_REMOVE", f"{user.username} deactivated")
    click.echo(f"removed {user.username}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_obj
def list_users(obj: Any, as_json: bool) -> None:
    """Every user with role and state."""
    rows = [u.__dict__ for u in _store(obj).users()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "" if row["active"] else " (removed)"
        click.echo(f"{row['username']:<24} {row['role']:<14} since {row['created_at']}{state}")
    if not rows:
        click.echo("(no users; add one with `tract users add NAME --role ROLE`)")
