"""``tract``: the command-line interface. Each command parses options, calls the platform and
prints the result as text or, with ``--json``, as JSON. Exit codes: 0 done (rejected rows
included), 1 refused (a decision, a lock, a bad option), 2 a whole file refused."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
import polars as pl

from services.cli import web as web_commands
from services.cli.console import (
    Context,
    audited_signing,
    credentials,
    emit,
    fail,
    json_option,
    record_refused_signature,
    signing_options,
    study_option,
)
from services.config import Settings
from services.errors import TractError
from services.render import report_text, table_text
from services.signatures import (
    Signature,
    SignatureRefusedError,
    manifestation,
    manifestation_of,
)

CONFLICT_FIELDS = ["conflict_id", "type", "subject_id", "tract_id", "status"]
SHOWN_REJECTIONS = 20
"""Rejected rows listed per file in the text output (every one is in --json and the log)."""


def _show_progress(name: str, result: object, seconds: float) -> None:
    """One line per file on the terminal as it is done: rows and rate."""
    rows = getattr(result, "read", None)
    if rows is None:
        click.secho(f"  {name}: refused ({seconds:.1f} s)", fg="red", err=True)
        return
    rate = rows / seconds if seconds > 0 else float("inf")
    click.echo(f"  {name}: {rows:,} rows in {seconds:.1f} s ({rate:,.0f} rows/s)", err=True)


@click.group()
@click.version_option(
    package_name="tract-adjudication", prog_name="tract", message="%(prog)s %(version)s"
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: os.environ.get("TRACT_HOME", "./tract-data"),
    show_default="$TRACT_HOME or ./tract-data",
    help="Folder holding the embedded event log and object store.",
)
@click.option("--bus", help="embedded (default) or kafka://HOST:PORT; env TRACT_BUS.")
@click.option("--store", help="local (default) or s3://BUCKET; env TRACT_STORE.")
@click.pass_context
def cli(ctx: click.Context, home: Path, bus: str | None, store: str | None) -> None:
    """Outcome adjudication for perianal fistula trials: ingest, adjudicate, decide, lock, report."""
    ctx.obj = Context(Settings.from_env(home=home, bus=bus, store=store))


@cli.command()
@click.option("--study", required=True, help="The study these files belong to.")
@click.option("--kind", help="Event kind, when the file name does not say (e.g. clinical_exam).")
@click.argument(
    "files", nargs=-1, required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--watch",
    type=click.Path(file_okay=False, path_type=Path),
    help="Serve a drop folder: ingest each new file once, move it to processed/ or refused/.",
)
@click.option("--poll", default=1.0, show_default=True, help="Seconds between scans (--watch).")
@click.option("--quiet", "-q", is_flag=True, help="Print only refusals and errors.")
@json_option
@click.pass_obj
def ingest(
    obj: Context,
    study: str,
    kind: str | None,
    files: tuple[Path, ...],
    watch: Path | None,
    poll: float,
    quiet: bool,
    as_json: bool,
) -> None:
    """Validate transfer files and publish their rows; rejected rows are kept with a reason.

    On a terminal each file's rows and rate are shown as it is done; the text output lists at
    most the first rejections of each file (all of them are in --json and in the dead letters:
    `tract audit`)."""
    if watch is not None:
        from services.drop_folder import serve

        return serve(obj.settings, study, watch, poll, as_json)
    if not files:
        fail("name the files to ingest, or --watch DIR to serve a drop folder")
    progress = None
    if not quiet and not as_json and sys.stderr.isatty():
        progress = _show_progress
    outcome = obj.platform.ingest(study, list(files), kind, on_file=progress)
    rows = [r.to_dict() for r in outcome.reports]
    rows += [
        {
            "file": e.file,
            "refused": str(e),
            "read": 0,
            "accepted": 0,
            "duplicates": 0,
            "rejected": 0,
            "rejections": [],
        }
        for e in outcome.refused
    ]
    keep = (
        "file",
        "kind",
        "read",
        "accepted",
        "duplicates",
        "rejected",
        "rejections",
        "refused",
        "ingest_run",
    )
    if as_json:
        emit([{k: r[k] for k in keep if k in r} for r in rows], True)
    elif not quiet:
        for report in outcome.reports:
            click.echo(report.summary())
            for rejection in report.rejected[:SHOWN_REJECTIONS]:
                click.echo(f"  rejected: {rejection}")
            hidden = len(report.rejected) - SHOWN_REJECTIONS
            if hidden > 0:
                click.echo(
                    f"  ... and {hidden} more rejected row(s) of {report.file}: all are in "
                    "--json and in the audit trail (`tract audit --study ... --csv FILE`)"
                )
    for refusal in outcome.refused:
        click.secho(f"refused: {refusal}", fg="red", err=True)
    if outcome.refused:
        sys.exit(2)


@cli.command()
@study_option
@click.option("--all", "show_all", is_flag=True, help="Include decided and resolved conflicts.")
@json_option
@click.pass_obj
def conflicts(obj: Context, study: str | None, show_all: bool, as_json: bool) -> None:
    """List conflicts for the committee (open ones unless --all)."""
    studies = [obj.platform.check_study(study)] if study else obj.platform.studies()
    frames = [obj.platform.conflicts(s).with_columns(study=pl.lit(s)) for s in studies]
    if not frames:
        emit([], as_json, f"no conflicts: nothing has been ingested into {obj.home} yet")
        return
    found = pl.concat(frames, how="diagonal_relaxed")
    if not show_all:
        found = found.filter(pl.col("status") == "OPEN")
    if as_json:
        emit(
            found.select(
                *CONFLICT_FIELDS, "study", "about", "detail", "reopened_reason"
            ).to_dicts(),
            True,
        )
    else:
        click.echo(table_text(found, [*CONFLICT_FIELDS, "detail"]))


@cli.command()
@click.argument("conflict_ids", metavar="CONFLICT_ID...", nargs=-1, required=True)
@click.option(
    "--status", type=click.Choice(["CLOSED", "NOT_CLOSED", "NOT_EVALUABLE", "NEW_TRACT", "MAPPED"])
)
@click.option("--maps-to", help="For UNMATCHED_TRACT: the registry tract the evidence belongs to.")
@click.option("--rationale", required=True, help="Why you vote so (required).")
@signing_options
@study_option
@json_option
@click.pass_obj
def vote(
    obj: Context,
    conflict_ids: tuple[str, ...],
    status: str | None,
    maps_to: str | None,
    rationale: str,
    signer: str,
    password_stdin: bool,
    study: str | None,
    as_json: bool,
) -> None:
    """Sign your own vote on one or more conflicts (a committee member, with your password).

    A decision takes effect when the rule set's quorum of committee members have signed
    concordant votes on the same evidence; until then the conflict stays open. Nobody votes
    for anyone else. Each conflict is checked first (status, rationale, evidence); if one is
    refused, nothing is signed.
    """
    if status is None and maps_to is None:
        fail("give --status (or --maps-to for an UNMATCHED_TRACT conflict)")
    platform = obj.platform
    choice = {"status": status, "rationale": rationale, "maps_to": maps_to, "study": study}
    # every vote checked before anything is signed
    checked = [platform.vote(conflict_id, dry_run=True, **choice) for conflict_id in conflict_ids]
    signed = credentials(signer, password_stdin)
    directory = obj.directory()
    results: list[dict[str, Any]] = []
    try:
        for one in checked:
            results.append(
                platform.vote(
                    one["conflict_id"],
                    credentials=signed,
                    directory=directory,
                    **(choice | {"study": one["study"]}),
                )
            )
    except SignatureRefusedError as exc:  # every vote left unsigned is recorded as refused
        fields = ("study", "conflict_id", "subject_id", "tract_id")  # as the web's refusals
        unsigned = [{k: v[k] for k in fields} for v in checked[len(results) :]]
        record_refused_signature(obj, signer, "VOTE", str(exc), unsigned)
        raise
    emit(results if len(results) > 1 else results[0], as_json, "\n".join(map(_vote_text, results)))


def _vote_text(result: dict) -> str:
    signature = manifestation(
        result["printed_name"], result["voter"], result["signed_at"], result["meaning"]
    )
    head = "already signed (not recorded twice)" if result["already_recorded"] else "signed"
    lines = [
        f"{head}: {signature}",
        f"  vote {result['vote_id']} on {result['conflict_id']} ({result['conflict_type']} "
        f"{result['subject_id']}/{result['tract_id']})",
    ]
    decision = result["decision"]
    if decision:
        lines.append(
            f"  decision {decision['decision_id']} is now in force: {decision['status']}"
            + (f" -> {decision['maps_to']}" if decision["maps_to"] else "")
            + ", signed by:"
        )
        lines += [f"    {s}" for s in decision["signatures"]]
    else:
        lines.append(f"  {result['needed']}")
    return "\n".join(lines)


@cli.command()
@click.argument("conflict_id", required=False)
@study_option
@json_option
@click.pass_obj
def votes(obj: Context, conflict_id: str | None, study: str | None, as_json: bool) -> None:
    """Every signed vote (of one conflict, with what is still needed), newest first."""
    from services.signatures import manifestation_expr

    if conflict_id:
        found, current = obj.platform.ballot(conflict_id, study)
        frame = obj.platform.votes(found).filter(pl.col("conflict_id") == conflict_id)
    else:
        found = obj.study(study)
        frame, current = obj.platform.votes(found), None
    frame = frame.sort("offset", descending=True).with_columns(
        signature=manifestation_expr("voter")
    )
    columns = ["conflict_id", "status", "maps_to", "signature", "rationale", "vote_id"]
    if as_json:
        emit(
            {
                "study": found,
                "needed": current.needed if current else None,
                "votes": frame.select(*columns, "fingerprint", "signed_via").to_dicts(),
            },
            True,
        )
        return
    click.echo(table_text(frame, columns) if frame.height else "no votes yet")
    if current:
        click.echo(current.needed)


@cli.command(
    hidden=True,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.pass_context
def decide(ctx: click.Context) -> None:
    """Gone: a decision is made of signed votes (`tract vote`)."""
    fail(
        "`tract decide` is gone: nobody records a decision for others. Each committee member "
        "signs their own vote: `tract vote CONFLICT_ID --as YOUR_NAME --status STATUS "
        "--rationale ...` (your password is asked for); the decision takes effect when the "
        "quorum has signed concordant votes"
    )


@cli.command()
@study_option
@click.option(
    "--subject",
    "subjects",
    multiple=True,
    help="Only this subject (repeatable): a point read, quick on any size of trial.",
)
@json_option
@click.pass_obj
def outcomes(obj: Context, study: str | None, subjects: tuple[str, ...], as_json: bool) -> None:
    """Per-tract outcomes and per-patient categories."""
    from services.state.maintained import KEPT  # not the visits: a study's adjudication

    result = obj.platform.outcomes(obj.study(study), subjects or None, KEPT)
    tracts = result.tracts.filter(pl.col("treated"))
    tract_cols = [
        "subject_id",
        "tract_id",
        "outcome",
        "decided_by",
        "rule_outcome",
        "clinical",
        "mri",
        "discharge_improved",
        "post_lock",
    ]
    if as_json:
        emit(
            {
                "study": result.study,
                "rule_set": result.rule_set,
                "rule_set_version": result.rule_set_version,
                "tracts": tracts.select(
                    *tract_cols, "decision_id", *_since_lock_columns(tracts, "locked_outcome")
                ).to_dicts(),
                "patients": result.patients.select(
                    "subject_id",
                    "category",
                    "n_treated",
                    "n_closed",
                    *_since_lock_columns(result.patients, "locked_category"),
                ).to_dicts(),
                "new_tracts": result.new_tracts.select(
                    "subject_id", "tract_id", "decision_id"
                ).to_dicts(),
            },
            True,
        )
    else:
        click.echo(table_text(tracts, tract_cols))
        click.echo()
        click.echo(
            table_text(
                result.patients,
                ["subject_id", "subject_status", "category", "n_treated", "n_closed"],
            )
        )


def _since_lock_columns(frame: pl.DataFrame, locked: str) -> list[str]:
    """What differs from the lock in force (present when the state keeps it)."""
    return [c for c in (locked, "changed_since_lock") if c in frame.columns]


@cli.command()
@study_option
@click.option(
    "--lock", "lock_id", help="Report from this locked snapshot (verified) instead of current data."
)
@json_option
@click.pass_obj
def report(obj: Context, study: str | None, lock_id: str | None, as_json: bool) -> None:
    """The trial's tables (completers, ITT, tracts, discharge, sensitivity, readers, pathology)."""
    result = obj.platform.report(obj.study(study), lock_id)
    emit(result, as_json, report_text(result) if not as_json else None)


def _by_gone(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--by NAME`` locked under any name typed; the person locking now signs."""
    if value is not None:
        raise click.UsageError(
            "a lock is no longer named by --by: the data manager locking signs it with their "
            "own user name and password, `tract lock --study S --lock-id L --reason R --as NAME` "
            "(the password is asked for, hidden, or read with --password-stdin)",
            ctx,
        )


def _requester(signer: str) -> str:
    """The user name ``--as`` gives, in the one form locks and signatures record."""
    from services.usernames import InvalidNameError, normalise_username

    try:
        return normalise_username(signer)
    except InvalidNameError as exc:
        raise SignatureRefusedError(f"signature refused: {exc}") from None


@cli.command()
@click.option("--study", required=True)
@click.option(
    "--lock-id", required=True, help="Id of the lock; the same id again returns the same lock."
)
@click.option("--reason", required=True, help="Why the database is locked (e.g. primary analysis).")
@signing_options
@click.option("--by", hidden=True, expose_value=False, callback=_by_gone)
@click.option("--level", type=click.Choice(["soft", "hard"]), default="soft", show_default=True)
@click.option(
    "--validate",
    is_flag=True,
    help="Run the Great Expectations gate (infra/gx) first, as the DAG does (needs the airflow "
    "extra); its results are kept in the lock.",
)
@click.option(
    "--open-queries-reason",
    default="",
    help="Why the lock goes ahead with site queries not closed (required when there are any; "
    "recorded in the lock; see `tract queries list`).",
)
@click.option(
    "--for-airflow",
    is_flag=True,
    help="Sign the lock now and leave taking it to the database_lock DAG: trigger it with the "
    "request id printed, signed in to Airflow as yourself (the DAG always validates).",
)
@json_option
@click.pass_obj
def lock(
    obj: Context,
    study: str,
    lock_id: str,
    reason: str,
    signer: str,
    password_stdin: bool,
    level: str,
    validate: bool,
    open_queries_reason: str,
    for_airflow: bool,
    as_json: bool,
) -> None:
    """Freeze an immutable, hash-verified snapshot; refused while any conflict is open, and
    while site queries are not closed unless --open-queries-reason says why (recorded).

    Signed by the data manager (or admin) at the keyboard: --as NAME and their password,
    asked for only once the study, the lock id, the conflicts and the site queries allow the
    lock. The signature (printed name, time, meaning) is kept in the lock's manifest; a refused
    one is in `tract audit` and locks nothing.

    With --for-airflow nothing is locked here: the signed request is recorded (only the study
    and the lock id are checked now) and the database_lock DAG takes the lock, checking the
    conflicts and site queries then, when you trigger it with the request id."""
    from services.lock.lock import take_by
    from services.signatures import LOCK, sign

    name = obj.study(study)

    def signed_at_the_keyboard(meaning: str) -> Signature:
        return sign(obj.directory(), credentials(signer, password_stdin), LOCK, meaning)

    if for_airflow:
        if validate:
            fail("--validate is for a lock taken here; the DAG always validates", 1)
        with audited_signing(obj, signer, "LOCK", name):
            asked = obj.platform.sign_lock_request(
                name,
                lock_id,
                reason,
                _requester(signer),
                level,
                open_queries_reason=open_queries_reason,
                sign=signed_at_the_keyboard,
            )
        by = take_by(asked["signed_at"])
        emit(
            asked | {"take_by": f"{by:%Y-%m-%dT%H:%M:%SZ}"},
            as_json,
            f"signed: {manifestation_of(asked)}\nlock request {asked['request_id']}: nothing "
            f"is locked yet. Signed in to Airflow as {asked['signer']}, trigger database_lock "
            f"with study {name} and request_id {asked['request_id']} by {by:%Y-%m-%d %H:%M} "
            "UTC (a signed lock not taken by then expires)",
        )
        return
    with audited_signing(obj, signer, "LOCK", name):
        manifest = obj.platform.lock(
            name,
            lock_id,
            reason,
            _requester(signer),
            level,
            validate=validate,
            open_queries_reason=open_queries_reason,
            sign=signed_at_the_keyboard,
        )
    where = obj.platform.store.location(f"locks/{study}/{lock_id}")
    note = "already locked" if manifest.get("already_locked") else "locked"
    event = obj.platform.lock_event(study, lock_id) or {}
    receipt = event.get("manifest_sha256")
    who = manifest.get("signature") if not manifest.get("already_locked") else None
    signed = ""
    if who:  # a new lock, signed now (11.50: printed name, time, meaning)
        signed = f"signed: {manifestation_of(who)}\n"
    emit(
        manifest | {"receipt": receipt},
        as_json,
        f"{signed}{note}: {study} {lock_id} at {where} ({len(manifest['files'])} files, sha256 "
        f"verified)\nreceipt: {receipt} (give it to analysts: `python -m services.analysis.job "
        "... --receipt` checks the lock is the one published)" + _queries_note(manifest),
    )


def _queries_note(manifest: dict) -> str:
    """What the lock says about the site queries still open at its cut."""
    pending = manifest.get("open_queries") or {}
    if not pending.get("not_closed"):
        return ""
    return (
        f"\nsite queries not closed at the lock: {pending['not_closed']} "
        f"(reason recorded: {pending.get('reason') or 'none given'})"
    )


@cli.command()
@study_option
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the trail as CSV.",
)
@click.option("--subject", help="Only this subject's rows (its id in any case).")
@json_option
@click.pass_obj
def audit(
    obj: Context, study: str | None, csv_path: Path | None, subject: str | None, as_json: bool
) -> None:
    """Every change: who, when, what, why, old and new value."""
    trail = obj.platform.audit(obj.study(study), subject=subject)
    if csv_path:
        trail.write_csv(csv_path)
        click.echo(f"wrote {trail.height} audit rows to {csv_path}")
    elif as_json:
        emit(trail.to_dicts(), True)
    else:
        click.echo(
            table_text(
                trail, ["at", "kind", "action", "who", "subject_id", "tract_id", "what", "why"]
            )
        )


@cli.command()
@click.option("--study", help="Only this study's locks (the log is always walked whole).")
@click.option(
    "--expect-head",
    metavar="SEQ:HASH",
    help="A chain head you noted earlier (from a previous verify or a lock): it must still hold.",
)
@json_option
@click.pass_obj
def verify(obj: Context, study: str | None, expect_head: str | None, as_json: bool) -> None:
    """Walk the event log's hash chain, every segment and every lock, and compare the outcomes'
    files with the log; say what was altered.

    On Kafka it walks the adjudicator service's applied log (<home>/adjudicator). Exit 0:
    intact. Exit 1: something does not match (the first finding is named).
    """
    from services.verify import verify_platform_home

    verdict = verify_platform_home(obj.settings, obj.platform, study, expect_head)
    emit(verdict.to_dict(), as_json, verdict.text())
    if not verdict.intact:
        sys.exit(1)


@cli.command()
@json_option
@click.pass_obj
def demo(obj: Context, as_json: bool) -> None:
    """Run the whole flow on a synthetic trial shaped like the published one (study DEMO)."""
    from services.demo.run import run_demo

    say = (lambda _line: None) if as_json else click.echo
    result = run_demo(obj.platform, obj.home / "demo-files", say)
    emit(result, as_json, report_text(result) if not as_json else None)


# Commands that live beside their adapters register here, one line each.
cli.add_command(web_commands.serve)
cli.add_command(web_commands.users)
cli.add_command(web_commands.password)
from services.cli import lock as lock_commands  # noqa: E402
from services.cli.adjudicator import adjudicator  # noqa: E402
from services.cli.kafka import kafka  # noqa: E402

cli.add_command(adjudicator)
cli.add_command(kafka)
cli.add_command(lock_commands.snapshot)
cli.add_command(lock_commands.unlock)
cli.add_command(lock_commands.lock_raise)
from services.cli.queries import queries  # noqa: E402

cli.add_command(queries)


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted")
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except TractError as exc:
        fail(str(exc))
    except OSError as exc:  # the home (or a file in it) cannot be created, read or written
        fail(home_problem(exc))
    except ModuleNotFoundError as exc:  # `scripts/setup core` leaves out the web, Kafka, S3...
        fail(missing_package(exc))


def missing_package(exc: ModuleNotFoundError) -> str:
    """A command whose packages the core install leaves out: which one, and the fix."""
    return (
        f"this command needs the Python package {exc.name!r}, which the core install "
        "(scripts/demo, scripts/setup core) leaves out; install everything with "
        "`scripts/setup all` (the web page, Kafka, S3, Airflow), then run it again"
    )


def home_problem(exc: OSError) -> str:
    """An operating-system error as a user can act on it: the path, why, and where the home
    comes from (a full disk or a read-only folder is not a bug to report)."""
    home = os.environ.get("TRACT_HOME", "./tract-data")
    for i, arg in enumerate(sys.argv):
        if arg == "--home" and i + 1 < len(sys.argv):
            home = sys.argv[i + 1]
        elif arg.startswith("--home="):
            home = arg.split("=", 1)[1]
    where = exc.filename or home
    why = exc.strerror or type(exc).__name__
    return (
        f"cannot use {where}: {why}. tract keeps its event log and lock store in the home "
        f"folder ({home}, from --home or TRACT_HOME, default ./tract-data); choose a folder you "
        "can create and write, e.g. `tract --home ~/tract-data ...` or `export TRACT_HOME=...`"
    )


from services.cli.export import export as export_command  # noqa: E402

cli.add_command(export_command)
