"""``tract snapshot list|open`` and ``tract unlock``: reading locks (verified) and undoing one.

Registered in :mod:`services.cli`. Reading needs only the store (an analyst's machine has no
event log); unlocking writes to the log and the store like the DAG does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from services.cli import Context


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
            *(f"  {name:<34} {rows:>9} rows" for name, rows in sorted(counts.items())),
            *([f"exported to {export}"] if export else []),
            "",
            report_text(report),
        ]
    )
    _echo({"row_counts": counts, "unlocked": undone, "report": report}, as_json, text)


@click.command()
@click.option("--study", required=True)
@click.option("--lock-id", required=True, help="The lock in force to undo.")
@click.option("--reason", required=True, help="Why the lock is undone (required).")
@click.option(
    "--by",
    "requested_by",
    default=lambda: os.environ.get("USER", "cli"),
    help="Who requests the unlock.",
)
@click.option(
    "--approvers", required=True, help="Two approvers, comma-separated, not the requester."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_obj
def unlock(
    obj: Context,
    study: str,
    lock_id: str,
    reason: str,
    requested_by: str,
    approvers: str,
    as_json: bool,
) -> None:
    """Undo the lock in force (its files stay); refused without two approvers."""
    from services.lock.unlock import unlock as do_unlock

    record = do_unlock(
        obj.platform.lock_sources(), study, lock_id, reason, requested_by, approvers.split(",")
    )
    note = "already unlocked" if record.get("already_unlocked") else "unlocked"
    _echo(
        record,
        as_json,
        f"{note}: {study} {lock_id} by {record['requested_by']}, approved by "
        f"{', '.join(record['approvers'])}; the lock's files stay at {record['location']}",
    )


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
