"""``tract snapshot list|open``, ``tract unlock request|approve|list`` and ``tract lock-raise``:
reading locks (verified), undoing one by signed approvals, raising a soft lock to hard.

Registered in :mod:`services.cli.main`. Reading needs only the store (an analyst's machine has no
event log); unlocking and raising write to the log and the store like the DAGs do, signed by
the person at the keyboard (``--as``, password asked for).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from services.cli.console import audited_signing, credentials, json_option, signing_options

if TYPE_CHECKING:
    from services.cli.console import Context


def _echo(data: object, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


@click.group()
def snapshot() -> None:
    """Locked and dated snapshots in the store: list them, open one (verified)."""


@snapshot.command("list")
@click.option("--study", help="Only this study.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_obj
def list_command(obj: Context, study: str | None, as_json: bool) -> None:
    """Every published lock (LOCKED or UNLOCKED) and dated snapshot."""
    from services.lock.catalog import list_snapshots

    store, locks = obj.store_and_locks()
    entries = list_snapshots(store, study, locks)
    lines = [
        f"{e.study:<10} {e.kind:<8} {e.id:<28} {e.at:<21} {e.level or '-':<5} {e.status:<17} "
        f"{e.integrity:<8} {e.location}" + (f"\n    {e.problem}" if e.problem else "")
        for e in entries
    ]
    _echo([e.to_dict() for e in entries], as_json, "\n".join(lines) or "no snapshots yet")


@snapshot.command("open")
@click.option("--study", required=True)
@click.option("--lock", "lock_id", help="A lock id (see `tract snapshot list`).")
@click.option("--snapshot", "stamp", help="A dated snapshot instead (e.g. 20261126T020000Z).")
@click.option(
    "--export",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also copy the verified files, byte for byte, with the manifest, here (for DuckDB and "
    "other tools; `tract snapshot check DIR` verifies the copy).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_obj
def open_command(
    obj: Context,
    study: str,
    lock_id: str | None,
    stamp: str | None,
    export: Path | None,
    as_json: bool,
) -> None:
    """Verify every file's sha256 against the manifest, then print the tables' row counts and
    the trial's tables. A tampered snapshot is refused (exit code 1)."""
    from services.adjudicator.ruleset import load_ruleset
    from services.lock.catalog import open_dated, unlock_record
    from services.lock.snapshot import open_lock
    from services.render import report_text

    if bool(lock_id) == bool(stamp):
        raise click.UsageError("give exactly one of --lock or --snapshot")
    store, locks = obj.store_and_locks()
    receipt = None
    if lock_id and locks is not None:
        mine = locks.filter((locks["lock_id"] == lock_id) & (locks["action"] == "LOCK"))
        receipt = mine["manifest_sha256"][0] if mine.height else None
    snap = (
        open_lock(store, study, lock_id, receipt)
        if lock_id
        else open_dated(store, study, str(stamp))
    )
    frames = snap.lazy()
    counts = {name: frame.collect().height for name, frame in frames.items()}
    if export is not None:
        from services.lock.catalog import dated_prefix
        from services.lock.snapshot import export_copy, lock_prefix

        prefix = lock_prefix(study, lock_id) if lock_id else dated_prefix(study, str(stamp))
        export_copy(store, prefix, export)
    undone = unlock_record(store, study, lock_id) if lock_id else None
    report = snap.report(load_ruleset().confidence_level)
    what = f"lock {lock_id}" if lock_id else f"snapshot {stamp}"
    status = (
        f"; UNLOCKED {undone['at']} by {undone['requested_by']} ({undone['reason']})"
        if undone
        else ""
    )
    text = "\n".join(
        [
            f"{study} {what}: {len(counts)} Parquet files, every sha256 verified{status}",
            *_signed_by(snap.manifest),
            *(f"  {name:<34} {rows:>9} rows" for name, rows in sorted(counts.items())),
            *([f"exported to {export}"] if export else []),
            "",
            report_text(report),
        ]
    )
    who = {k: snap.manifest.get(k) for k in LOCKED_BY if k in snap.manifest}
    _echo({"lock": who, "row_counts": counts, "unlocked": undone, "report": report}, as_json, text)


LOCKED_BY = ("requested_by", "locked_at", "level", "reason", "signature")
"""What a lock's manifest says of who locked it and why (shown with its data, 11.50)."""


def _signed_by(manifest: dict[str, Any]) -> list[str]:
    """Who locked, when and why, and the signatures the manifest holds (printed name, time,
    meaning): a lock's data is never shown without them."""
    from services.signatures import manifestation_of

    if not manifest.get("requested_by"):
        return []  # a dated snapshot: nobody locked it
    lines = [
        f"locked {manifest.get('locked_at')} by {manifest['requested_by']} "
        f"({manifest.get('level')}): {manifest.get('reason')}"
    ]
    if signature := manifest.get("signature"):
        lines.append(f"  signed: {manifestation_of(signature)}")
    return lines


def _gone(ctx: click.Context, param: click.Parameter, value: object) -> None:
    """The unsigned unlock (``--by`` and a list of ``--approvers``) is gone."""
    from services.lock.unlock import MIN_APPROVERS  # the lock modules load only when used

    if value:
        raise click.UsageError(
            "an unlock is no longer named by --by and --approvers: the data manager signs a "
            "request (`tract unlock request --study S --lock-id L --reason R --as NAME`) and "
            f"{MIN_APPROVERS} other people with an approving role each sign their approval "
            "(`tract unlock approve REQUEST_ID --as NAME`)",
            ctx,
        )


def _old_options(function: Any) -> Any:
    """The options of the unsigned unlock, kept hidden so an old invocation gets the pointer."""
    for name in ("--study", "--lock-id", "--reason", "--by", "--approvers"):
        function = click.option(name, hidden=True, expose_value=False, callback=_gone)(function)
    return function


@click.group(invoke_without_command=True)
@_old_options
@click.pass_context
def unlock(ctx: click.Context) -> None:
    """Undo the lock in force by signatures: a data manager requests, two other people with an
    approving role (approver or admin) approve, and the lock is then undone (its files stay)."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@unlock.command("request")
@click.option("--study", required=True)
@click.option("--lock-id", required=True, help="The lock in force to undo.")
@click.option("--reason", required=True, help="Why the lock must be undone (required).")
@signing_options
@json_option
@click.pass_obj
def request_command(
    obj: Context,
    study: str,
    lock_id: str,
    reason: str,
    signer: str,
    password_stdin: bool,
    as_json: bool,
) -> None:
    """Sign a request to undo the lock in force (a data manager or admin)."""
    from services.lock.unlock import MIN_APPROVERS

    with audited_signing(obj, signer, "UNLOCK_REQUEST", study):
        asked = obj.platform.request_unlock(
            study, lock_id, reason, credentials(signer, password_stdin), obj.directory()
        )
    _echo(
        asked.to_dict(),
        as_json,
        f"signed: {asked.requested}\nunlock request {asked.request_id}: it needs "
        f"{MIN_APPROVERS} approvals from people with an approving role (approver or admin) "
        f"other than {asked.requested_by}: `tract unlock approve {asked.request_id} --as NAME`",
    )


@unlock.command("approve")
@click.argument("request_id")
@signing_options
@json_option
@click.pass_obj
def approve_command(
    obj: Context, request_id: str, signer: str, password_stdin: bool, as_json: bool
) -> None:
    """Sign your approval of an unlock request; the lock is undone once the approvals are
    complete."""
    asked_of = [r.study for r in obj.platform.unlock_requests() if r.request_id == request_id]
    # a refusal is filed under the request's study (platform-wide for an unknown request)
    with audited_signing(obj, signer, "UNLOCK_APPROVE", next(iter(asked_of), None)):
        asked, record = obj.platform.approve_unlock(
            request_id, credentials(signer, password_stdin), obj.directory()
        )
    text = f"signed: {asked.approvals[-1]}\n{asked.summary()}"
    if record is not None:
        text += f"\nunlocked: {asked.study} {asked.lock_id}; its files stay at {record['location']}"
    _echo({"request": asked.to_dict(), "unlock": record}, as_json, text)


@unlock.command("list")
@click.option("--study", help="Only this study.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_obj
def list_requests(obj: Context, study: str | None, as_json: bool) -> None:
    """Every unlock request with its signatures and state."""
    found = obj.platform.unlock_requests(study)
    lines = []
    for asked in found:
        lines += [asked.summary(), f"  requested: {asked.requested}"]
        lines += [f"  approved:  {a}" for a in asked.approvals]
    _echo([a.to_dict() for a in found], as_json, "\n".join(lines) or "no unlock requests")


@click.command("lock-raise")
@click.option("--study", required=True)
@click.option("--lock-id", required=True, help="The soft lock in force to raise to hard.")
@click.option("--reason", required=True, help="Why the lock becomes hard (required).")
@signing_options
@json_option
@click.pass_obj
def lock_raise(
    obj: Context,
    study: str,
    lock_id: str,
    reason: str,
    signer: str,
    password_stdin: bool,
    as_json: bool,
) -> None:
    """Raise the soft lock in force to hard, signed (a data manager or admin): its files are
    written again with retention, so the store refuses to change or delete them."""
    with audited_signing(obj, signer, "LOCK_RAISE", study):
        raised = obj.platform.raise_lock(
            study, lock_id, reason, credentials(signer, password_stdin), obj.directory()
        )
    note = "already raised" if raised.get("already_raised") else "raised to hard"
    text = f"{note}: {study} {lock_id}; the retained copy is at {raised['location']}"
    if raised.get("signature"):
        text = f"signed: {raised['signature']}\n" + text
    _echo(raised, as_json, text)


@snapshot.command("check")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--receipt", help="The lock's receipt (its manifest's sha256), to anchor the copy.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def check_command(folder: Path, receipt: str | None, as_json: bool) -> None:
    """Verify a copied lock (``snapshot open --export``): every file against the copied
    manifest, and the manifest against the receipt when given. Exit 1 on any mismatch."""
    from services.lock.snapshot import verify_folder

    checked = verify_folder(folder, receipt)
    anchor = "; the manifest matches the receipt" if receipt else " (no receipt given)"
    _echo(checked, as_json, f"{folder}: {checked['files']} files, every sha256 verified{anchor}")
