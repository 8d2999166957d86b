"""What every command of the ``tract`` CLI shares: the context (settings, the platform opened
once, the study asked for), the common options, and how results and refusals are printed.

The command modules of this package import this, never ``main.py`` (which registers them), so
the CLI's modules do not import each other in a circle.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import click
import polars as pl

from services.config import Settings
from services.platform import Platform


def fail(message: str, code: int = 1) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


class Context:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.home
        self._platform: Platform | None = None

    @property
    def platform(self) -> Platform:
        if self._platform is None:
            self._platform = Platform.from_settings(self.settings)
        return self._platform

    def directory(self) -> Any:
        """The registered users (``<home>/web/users.db``), who sign votes and approvals, each
        only as the log last recorded their account (``services/accounts.py``)."""
        from services.users import UserStore

        return self.platform.signers(UserStore.for_home(self.home))

    def store_and_locks(self) -> tuple[Any, pl.DataFrame | None]:
        """The store, and the log's lock events when this home has a log (an analyst's
        machine may have only the store: locks are then checked against their manifests)."""
        from services.store import open_store

        if self.settings.bus == "embedded" and not (self.home / "log").exists():
            return open_store(self.settings), None
        platform = self.platform
        return platform.store, platform.source.records("lock").collect()

    def study(self, study: str | None) -> str:
        """The named study (which this home must hold), or the only one there is."""
        if study:
            return self.platform.check_study(study)
        studies = self.platform.studies()
        if len(studies) == 1:
            return studies[0]
        fail(
            f"name a study with --study; {self.home} holds {', '.join(studies) or 'none yet (ingest first)'}"
        )
        raise AssertionError


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
study_option = click.option("--study", help="Study id (default: the only study in the home).")


def _no_argv_password(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """A password in argv is readable by every local account (ps, /proc/*/cmdline)."""
    if value is not None:
        raise click.UsageError(
            "--password is not accepted: a password on the command line is visible to other "
            "local accounts; omit it to be prompted, or pipe it in with --password-stdin",
            ctx,
        )


no_argv_password = click.option(
    "--password", hidden=True, expose_value=False, callback=_no_argv_password
)
"""A hidden ``--password`` that refuses, saying why and what to do instead."""


def signing_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--as NAME`` (who signs) and ``--password-stdin``; the password is prompted for
    (hidden) otherwise, and never taken from argv."""
    for option in reversed(
        [
            click.option(
                "--as",
                "signer",
                required=True,
                help="Your own user name: you sign with your password (asked for, hidden).",
            ),
            click.option(
                "--password-stdin",
                "password_stdin",
                is_flag=True,
                help="Read your password from the first line of standard input instead of "
                "prompting (for scripts).",
            ),
            no_argv_password,
        ]
    ):
        function = option(function)
    return function


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment
        return "unknown"


def record_refused_signature(
    obj: Context,
    signer: str,
    action: str,
    reason: str,
    about: Sequence[dict[str, str | None]] = ({},),
) -> None:
    """A signature refused at a terminal goes into the audit trail as the web page records
    its refusals: one REFUSED access event for each ``about`` (what it was for: ``study``,
    ``conflict_id``, ``subject_id``, ``tract_id``; no study files it platform-wide).
    ``reason`` is the refusal's message, which never holds the password
    (:class:`services.signatures.Credentials` keeps it out of every text)."""
    from services.audit import access_event

    client = f"cli:{_os_user()}"
    obj.platform.publish(
        [
            access_event(
                who=signer,
                role=None,
                action=action,
                outcome="REFUSED",
                detail=reason,
                client=client,
                **context,
            )
            for context in about
        ]
    )


@contextlib.contextmanager
def audited_signing(
    obj: Context, signer: str, action: str, study: str | None = None
) -> Iterator[None]:
    """Record a :class:`~services.signatures.SignatureRefusedError` raised inside (wrong
    password, role, name) with :func:`record_refused_signature`, then let it go on to the
    user."""
    from services.signatures import SignatureRefusedError

    try:
        yield
    except SignatureRefusedError as exc:
        record_refused_signature(obj, signer, action, str(exc), [{"study": study}])
        raise


def credentials(signer: str, from_stdin: bool) -> Any:
    """The signer's credentials: the password prompted for once (hidden) or read from the
    first line of stdin; the terminal's OS account is recorded with the signature."""
    from services.signatures import Credentials

    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not password:
            fail(
                "no password on standard input; pipe one line, e.g. "
                "`printf '%s\\n' \"$PASSWORD\" | tract ... --password-stdin`"
            )
    else:
        password = click.prompt(f"Password for {signer} (to sign)", hide_input=True)
    user = _os_user()
    return Credentials(signer, password, "cli", f"cli, OS user {user}", f"cli:{user}")
