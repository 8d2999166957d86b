"""``tract``: the command-line interface. Each command parses options, calls the platform and
prints the result as text or, with ``--json``, as JSON. Exit codes: 0 done (rejected rows
included), 1 refused (a decision, a lock, a bad option), 2 a whole file refused."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
import polars as pl

from services.config import Settings
from services.errors import TractError
from services.platform import Platform
from services.render import report_text, table_text
from services.web import commands as web_commands

CONFLICT_FIELDS = ["conflict_id", "type", "subject_id", "tract_id", "status"]


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

    def study(self, study: str | None) -> str:
        """The named study, or the only one there is."""
        if study:
            return study
        studies = self.platform.studies()
        if len(studies) == 1:
            return studies[0]
        fail(
            f"name a study with --study; {self.home} holds {', '.join(studies) or 'none yet (ingest first)'}"
        )
        raise AssertionError


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
study_option = click.option("--study", help="Study id (default: the only study in the home).")


@click.group()
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
@json_option
@click.pass_obj
def ingest(
    obj: Context,
    study: str,
    kind: str | None,
    files: tuple[Path, ...],
    watch: Path | None,
    poll: float,
    as_json: bool,
) -> None:
    """Validate transfer files and publish their rows; rejected rows are kept with a reason."""
    if watch is not None:
        from services.ingest.watch import serve

        return serve(obj.settings, study, watch, poll, as_json)
    if not files:
        fail("name the files to ingest, or --watch DIR to serve a drop folder")
    outcome = obj.platform.ingest(study, list(files), kind)
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
    else:
        for report in outcome.reports:
            click.echo(report.summary())
            for rejection in report.rejected:
                click.echo(f"  rejected: {rejection}")
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
    studies = [study] if study else obj.platform.studies()
    frames = [obj.platform.adjudicate(s).conflicts.with_columns(study=pl.lit(s)) for s in studies]
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
@click.argument("conflict_id")
@click.option(
    "--status", type=click.Choice(["CLOSED", "NOT_CLOSED", "NOT_EVALUABLE", "NEW_TRACT", "MAPPED"])
)
@click.option("--maps-to", help="For UNMATCHED_TRACT: the registry tract the evidence belongs to.")
@click.option("--rationale", required=True, help="Why the committee decided so (required).")
@click.option(
    "--members", required=True, help="Deciding members, comma-separated (quorum from the rule set)."
)
@click.option(
    "--by",
    "recorded_by",
    default=lambda: os.environ.get("USER", "cli"),
    help="Who records the decision.",
)
@study_option
@json_option
@click.pass_obj
def decide(
    obj: Context,
    conflict_id: str,
    status: str | None,
    maps_to: str | None,
    rationale: str,
    members: str,
    recorded_by: str,
    study: str | None,
    as_json: bool,
) -> None:
    """Record the committee's decision on a conflict."""
    if status is None and maps_to is None:
        fail("give --status (or --maps-to for an UNMATCHED_TRACT conflict)")
    decision = obj.platform.decide(
        conflict_id,
        status=status,
        rationale=rationale,
        members=members.split(","),
        recorded_by=recorded_by,
        maps_to=maps_to,
        study=study,
    )
    emit(
        decision,
        as_json,
        f"recorded {decision['decision_id']}: {conflict_id} -> {decision['status']}",
    )


@cli.command()
@study_option
@json_option
@click.pass_obj
def outcomes(obj: Context, study: str | None, as_json: bool) -> None:
    """Per-tract outcomes and per-patient categories."""
    result = obj.platform.adjudicate(obj.study(study))
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
                "tracts": tracts.select(*tract_cols, "decision_id").to_dicts(),
                "patients": result.patients.select(
                    "subject_id", "category", "n_treated", "n_closed"
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


@cli.command()
@click.option("--study", required=True)
@click.option(
    "--lock-id", required=True, help="Id of the lock; the same id again returns the same lock."
)
@click.option("--reason", required=True, help="Why the database is locked (e.g. primary analysis).")
@click.option("--by", "requested_by", required=True, help="The data manager requesting the lock.")
@click.option("--level", type=click.Choice(["soft", "hard"]), default="soft", show_default=True)
@json_option
@click.pass_obj
def lock(
    obj: Context,
    study: str,
    lock_id: str,
    reason: str,
    requested_by: str,
    level: str,
    as_json: bool,
) -> None:
    """Freeze an immutable, hash-verified snapshot; refused while any conflict is open."""
    manifest = obj.platform.lock(study, lock_id, reason, requested_by, level)
    where = obj.platform.store.location(f"locks/{study}/{lock_id}")
    note = "already locked" if manifest.get("already_locked") else "locked"
    emit(
        manifest,
        as_json,
        f"{note}: {study} {lock_id} at {where} ({len(manifest['files'])} files, sha256 verified)",
    )


@cli.command()
@study_option
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the trail as CSV.",
)
@json_option
@click.pass_obj
def audit(obj: Context, study: str | None, csv_path: Path | None, as_json: bool) -> None:
    """Every change: who, when, what, why, old and new value."""
    trail = obj.platform.audit(obj.study(study))
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
from services.adjudicator import lock_commands  # noqa: E402
from services.adjudicator.commands import adjudicator  # noqa: E402
from services.bus.commands import kafka  # noqa: E402

cli.add_command(adjudicator)
cli.add_command(kafka)
cli.add_command(lock_commands.snapshot)
cli.add_command(lock_commands.unlock)


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


from services.export.commands import export as export_command  # noqa: E402

cli.add_command(export_command)
