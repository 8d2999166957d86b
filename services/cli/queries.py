"""``tract queries``: the site queries from the command line (list, CSV for a site, and the
data manager's answer, close and reopen), the same operations as the web page's.
Registered in :mod:`services.cli.main`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from services.cli.console import audited_signing, credentials, emit, json_option, signing_options

if TYPE_CHECKING:
    from services.cli.console import Context

STATUS = {
    "not-closed": "NOT_CLOSED",
    "open": "OPEN",
    "answered": "ANSWERED",
    "closed": "CLOSED",
    "all": None,
}
SHOWN = ("query_id", "site_id", "subject_id", "tract_id", "addressed_to", "status", "question")


@click.group()
def queries() -> None:
    """Site queries: every rejected row and every conflict a site or lab must answer."""


def _filtered(obj: Context, study: str | None, site: str | None, subject: str | None, status: str):
    from services.queries import filter_queries

    name = obj.study(study)
    every = obj.platform.queries(name)
    return name, filter_queries(every, site=site, subject=subject, status=STATUS[status])


def _filters(command):  # type: ignore[no-untyped-def]
    for option in reversed(
        (
            click.option("--study", help="Study id (default: the only study in the home)."),
            click.option("--site", help="Only this site's queries."),
            click.option("--subject", help="Only this subject's queries."),
            click.option(
                "--status",
                type=click.Choice(list(STATUS)),
                default="not-closed",
                show_default=True,
                help="not-closed = open or answered.",
            ),
        )
    ):
        command = option(command)
    return command


@queries.command("list")
@_filters
@json_option
@click.pass_obj
def list_command(
    obj: Context,
    study: str | None,
    site: str | None,
    subject: str | None,
    status: str,
    as_json: bool,
) -> None:
    """The queries (by default those not closed), per site and subject."""
    from services.render import table_text

    _, rows = _filtered(obj, study, site, subject, status)
    if as_json:
        emit(rows.drop("raw").to_dicts(), True)
        return
    click.echo(table_text(rows, list(SHOWN)) if rows.height else "no queries match")


@queries.command("export")
@_filters
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The CSV file to write (one row per query, for the site).",
)
@click.pass_obj
def export_command(
    obj: Context, study: str | None, site: str | None, subject: str | None, status: str, out: Path
) -> None:
    """The queries as CSV for a site (spreadsheet-safe), e.g. --site SITE01 --out site01.csv."""
    from services.queries import queries_csv

    _, rows = _filtered(obj, study, site, subject, status)
    out.write_text(queries_csv(rows), encoding="utf-8")
    click.echo(f"wrote {rows.height} quer{'y' if rows.height == 1 else 'ies'} to {out}")


def _act(action: str, help_text: str, note_required: bool):  # type: ignore[no-untyped-def]
    @click.argument("query_ids", nargs=-1, required=True)
    @click.option("--study", help="Study id (default: the only study in the home).")
    @click.option("--note", required=note_required, default="", help=help_text)
    @signing_options
    @json_option
    @click.pass_obj
    def command(
        obj: Context,
        query_ids: tuple[str, ...],
        study: str | None,
        note: str,
        signer: str,
        password_stdin: bool,
        as_json: bool,
    ) -> None:
        """Who acts is proved by their password, as on the page by their sign-in: a query
        closed under a name is closed by that data manager, never by whoever types it."""
        from services.queries import check_action, find
        from services.signatures import REVIEW_QUERY, sign

        name = obj.study(study)
        pending = obj.platform.queries(name)
        for query_id in query_ids:  # refused by the query's state before a password is asked
            check_action(find(pending, query_id, name), action, note)
        with audited_signing(obj, signer, "QUERY", name):
            who = sign(obj.directory(), credentials(signer, password_stdin), REVIEW_QUERY, action)
        done = [obj.platform.act_on_query(name, q, action, note, who.signer) for q in query_ids]
        emit(
            done,
            as_json,
            "\n".join(f"{d['query_id']}: {action.lower()} by {d['by']}" for d in done),
        )

    return command


queries.command("answer", help="Record the site's answer (the query waits for your review).")(
    _act("ANSWERED", "The site's answer, in its words.", True)
)
queries.command(
    "close", help="Close queries after review (a note is needed to close one unanswered)."
)(_act("CLOSED", "Why it is closed (needed when the query has no answer).", False))
queries.command("reopen", help="Send queries back to the site.")(
    _act("REOPENED", "What the site must still do.", True)
)
