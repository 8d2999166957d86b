"""``tract serve`` and ``tract users``: the web page's commands, registered in services/cli/main.py.

Heavy imports (FastAPI, uvicorn) happen inside the commands, so ``tract --help`` stays quick.
"""

from __future__ import annotations

import getpass
import json
import sys
from typing import Any

import click

from services.cli.console import no_argv_password
from services.roles import ROLES


def _store(obj: Any) -> Any:
    from services.users import UserStore

    return UserStore.for_home(obj.home)


def _record(obj: Any, action: str, detail: str, *accounts: str) -> None:
    """User changes land in the audit trail, attributed to the operating-system account; each
    of ``accounts`` is recorded in the log as the store now holds it (what its signatures are
    checked against: services/accounts.py)."""
    from services.accounts import account_events
    from services.audit import access_event

    who = f"cli:{getpass.getuser()}"
    changed = (
        account_events(_store(obj), accounts, ACCOUNT_ACTIONS[action], who) if accounts else []
    )
    obj.platform.record(
        [
            access_event(who=who, role=None, action=action, outcome="ALLOWED", detail=detail),
            *changed,
        ]
    )


ACCOUNT_ACTIONS = {
    "USER_ADD": "ADD",
    "USER_NAME": "NAME",
    "USER_PASSWORD": "PASSWORD",
    "USER_REMOVE": "REMOVE",
    "USER_RECORD": "RECORD",
    "USER_CHAIR": "CHAIR",
}


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
    TRACT_WEB_SECURE_COOKIES (auto, 1 or 0), TRACT_WEB_SESSION_HOURS (default 12),
    TRACT_WEB_COMMITTEE_SEES_RESULTS (default 0), TRACT_WEB_MAX_FAILED_SIGN_INS (5, per
    account and address), TRACT_WEB_MAX_FAILED_PER_CLIENT (20, per address),
    TRACT_WEB_MAX_FAILED_PER_ACCOUNT (100, per account from new addresses),
    TRACT_WEB_LOCKOUT_MINUTES (15).
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
    app.state.web.record.flush()  # refusals still being aggregated reach the audit trail


@click.group()
def users() -> None:
    """Manage who can sign in to the web page (kept in <home>/web/users.db). A password set
    here is temporary; each person chooses their own with `tract password` or on the page."""


PASSWORD_STDIN = click.option(
    "--password-stdin",
    "from_stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (for scripts) instead of "
    "prompting.",
)


def _password(from_stdin: bool, prompt: str) -> str:
    """From a hidden prompt (asked twice) or the first line of stdin; never from argv."""
    if not from_stdin:
        return click.prompt(prompt, hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not line:
        click.secho(
            "error: no password on standard input; pipe one line, e.g. "
            "`printf '%s\\n' \"$PASSWORD\" | tract users add NAME --role ROLE --password-stdin`",
            fg="red",
            err=True,
        )
        sys.exit(1)
    return line


FULL_NAME = click.option(
    "--full-name",
    default="",
    help='The printed name the user\'s electronic signatures show (e.g. "Dr Anna Adams"); '
    "needed to sign votes, unlock requests and approvals.",
)


@users.command("add")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the user may do.")
@FULL_NAME
@PASSWORD_STDIN
@no_argv_password
@click.pass_obj
def add(obj: Any, username: str, role: str, full_name: str, from_stdin: bool) -> None:
    """Add a user (or bring a removed one back) with a role, a printed name and a temporary
    password (prompted twice, hidden, or read from stdin with --password-stdin): it signs
    nothing until its owner chooses their own (first sign-in on the page, or `tract
    password`)."""
    password = _password(from_stdin, "Password")
    user = _store(obj).add(username, role, password, full_name)
    named = f", signs as {user.full_name!r}" if user.full_name else ""
    _record(obj, "USER_ADD", f"{user.username} as {user.role}{named}", user.username)
    click.echo(f"added {user.username} ({user.role}){named}")
    _tell_temporary(user.username)
    if not user.full_name:
        click.secho(
            f"{user.username} has no printed name and cannot sign until one is set: "
            f'`tract users set-name {user.username} --full-name "..."`',
            fg="yellow",
            err=True,
        )


@users.command("set-name")
@click.argument("username")
@click.option("--full-name", required=True, help='The printed name, e.g. "Dr Anna Adams".')
@click.pass_obj
def set_name(obj: Any, username: str, full_name: str) -> None:
    """Set the printed name a user's signatures show from now on (signatures already made
    keep the name they were made with)."""
    user = _store(obj).set_full_name(username, full_name)
    _record(obj, "USER_NAME", f"{user.username} signs as {user.full_name!r}", user.username)
    click.echo(f"{user.username} now signs as {user.full_name!r}")


@users.command("passwd")
@click.argument("username")
@PASSWORD_STDIN
@no_argv_password
@click.pass_obj
def passwd(obj: Any, username: str, from_stdin: bool) -> None:
    """Reset a user's password to a temporary one (prompted twice, hidden, or read from stdin
    with --password-stdin): it signs nothing until its owner chooses their own; the user's
    open sessions end."""
    password = _password(from_stdin, "New password")
    user = _store(obj).set_password(username, password)
    _record(obj, "USER_PASSWORD", f"new password for {user.username}", user.username)
    click.echo(f"password changed for {user.username}")
    _tell_temporary(user.username)


def _tell_temporary(username: str) -> None:
    click.secho(
        f"this password is temporary: give it to {username}, who signs nothing until they "
        f"choose their own (at their first sign-in on the web page, or `tract password --as "
        f"{username}`)",
        fg="yellow",
        err=True,
    )


@click.command("password")
@click.option("--as", "username", required=True, help="Your user name.")
@click.option(
    "--password-stdin",
    "from_stdin",
    is_flag=True,
    help="Read the current password and then the new one from the first two lines of "
    "standard input (for scripts) instead of prompting.",
)
@no_argv_password
@click.pass_obj
def password(obj: Any, username: str, from_stdin: bool) -> None:
    """Change your own password (the current one, then the new one twice; hidden). A password
    an administrator set is temporary: it signs nothing until you choose your own here or at
    your first sign-in on the web page."""
    from services.accounts import chosen_by_owner
    from services.audit import access_event
    from services.errors import UserError

    if from_stdin:
        current = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        new = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        current = click.prompt(f"Current password for {username}", hide_input=True)
        new = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    store = _store(obj)
    who = f"cli:{getpass.getuser()}"
    try:
        user = store.change_password(username, current, new, who)
    except UserError as exc:
        obj.platform.record(
            [
                access_event(
                    who=username,
                    role=None,
                    action="PASSWORD_CHANGE",
                    outcome="REFUSED",
                    detail=f"{exc} ({who})",
                )
            ]
        )
        raise
    obj.platform.record(
        [
            access_event(
                who=user.username,
                role=user.role,
                action="PASSWORD_CHANGE",
                outcome="ALLOWED",
                detail=f"{user.username} chose a new password ({who})",
            ),
            *chosen_by_owner(store, user.username),
        ]
    )
    click.echo(f"password changed for {user.username}: only you know it now")


@users.command("remove")
@click.argument("username")
@click.pass_obj
def remove(obj: Any, username: str) -> None:
    """Deactivate a user and end their sessions (the name stays reserved for the audit trail)."""
    user = _store(obj).remove(username)
    _record(obj, "USER_REMOVE", f"{user.username} deactivated", user.username)
    click.echo(f"removed {user.username}")


@users.command("record")
@click.argument("usernames", nargs=-1)
@click.pass_obj
def record(obj: Any, usernames: tuple[str, ...]) -> None:
    """Record accounts in the log as the user store holds them: every account whose entry
    differs from the log's record, or the USERNAMES given. An account signs only as the log
    last recorded it; this is how a home made before accounts were recorded, or a user store
    restored from a backup, signs again. The audit trail shows who recorded what."""
    from services.accounts import difference, recorded_accounts

    store = _store(obj)
    stored, recorded = store.accounts(), recorded_accounts(obj.platform.source)
    if usernames:  # each normalised, or refused naming it (UserError)
        names = sorted({store.user(name).username for name in usernames})
    else:
        names = [n for n in sorted(stored) if recorded.get(n) != stored[n]]
    if not names:
        click.echo("every account is recorded as the user store holds it")
        return
    was = [difference(name, stored[name], recorded.get(name)) for name in names]
    _record(
        obj, "USER_RECORD", f"recorded as the user store holds them: {', '.join(names)}", *names
    )
    for problem in filter(None, was):
        click.echo(f"was: {problem}")
    click.echo(f"recorded {', '.join(names)}")


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
        if row["active"] and row["temporary"]:
            state = " (temporary password: signs nothing until changed)"
        name = row["full_name"] or "(no printed name: cannot sign)"
        click.echo(
            f"{row['username']:<24} {row['role']:<14} {name:<32} since {row['created_at']}{state}"
        )
    if not rows:
        click.echo("(no users; add one with `tract users add NAME --role ROLE`)")


@users.command("chair")
@click.argument("username")
@click.option("--off", is_flag=True, help="Clear the flag instead of setting it.")
@click.pass_obj
def chair(obj: Any, username: str, off: bool) -> None:
    """Flag a committee member as the committee's chair (who assigns conflicts to members on the
    web page), or clear the flag with --off."""
    from services.web.chairs import Chairs

    name = Chairs(_store(obj)).set(username, on=not off)
    said = f"{name} {'no longer chairs' if off else 'chairs'} the committee"
    _record(obj, "USER_CHAIR", said, name)
    click.echo(f"{name} {'no longer chairs' if off else 'now chairs'} the committee")
