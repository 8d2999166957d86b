"""An example analysis job: read a locked snapshot from the store (S3 or a folder), verify
every file against the manifest, recompute the trial's tables from the locked Parquet and
print them, checking they match the report frozen with the lock.

    python -m services.analysis.job --store s3://tract-locks --study EXO1 --lock PRIMARY \
        --receipt 74f62136...   # the lock's receipt, as `tract lock` printed it

The S3 endpoint and keys come from ``TRACT_S3_ENDPOINT``, ``TRACT_S3_ACCESS_KEY``,
``TRACT_S3_SECRET_KEY`` (and ``TRACT_S3_SECURE``); nothing else of the platform is needed:
no event log, no Airflow. The receipt (the sha256 of the manifest the LOCK event published)
anchors the lock: without it, or a reachable event log (``--home``), a manifest rewritten
together with its files would still verify, and the job says so. Exit code 1 when the lock is
missing, tampered with, or not the one the receipt names.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import click

from services.config import Settings
from services.errors import TractError

#: Sections of the report that must come out the same when recomputed from the locked files.
REPRODUCED = ("completers", "itt", "tracts", "discharge_improved", "sensitivity")


@dataclass(frozen=True)
class JobResult:
    study: str
    lock_id: str
    location: str
    row_counts: dict[str, int]
    report: dict[str, Any]
    reproduced: bool
    anchored_by: str | None
    """"receipt", "log" or None: what the manifest itself was checked against."""


def run_job(settings: Settings, study: str, lock_id: str, receipt: str | None = None) -> JobResult:
    """Open the lock (verified: the manifest against the receipt or the event log when there
    is one, every file against the manifest), recompute its report, compare with the frozen
    one."""
    from services.adjudicator.ruleset import load_ruleset
    from services.lock.snapshot import lock_prefix, open_lock
    from services.store import open_store

    store = open_store(settings)
    anchored_by = "receipt" if receipt else None
    if receipt is None and (settings.home / "log").exists():
        from services.platform import Platform

        event = Platform.from_settings(settings).lock_event(study, lock_id)
        receipt, anchored_by = (event["manifest_sha256"], "log") if event else (None, None)
    snapshot = open_lock(store, study, lock_id, receipt)
    frozen = json.loads(snapshot.files["report.json"])  # verified with the rest
    report = snapshot.report(load_ruleset().confidence_level)
    reproduced = all(
        json.dumps(report.get(k), sort_keys=True, default=str)
        == json.dumps(frozen.get(k), sort_keys=True, default=str)
        for k in REPRODUCED
    )
    counts = {name: frame.collect().height for name, frame in snapshot.lazy().items()}
    return JobResult(
        study,
        lock_id,
        store.location(lock_prefix(study, lock_id)),
        counts,
        report,
        reproduced,
        anchored_by,
    )


def render(result: JobResult) -> str:
    from services.render import report_text

    anchor = {
        "receipt": "the manifest is the one your receipt names",
        "log": "the manifest is the one the event log's LOCK event names",
        None: "NOT ANCHORED: pass --receipt (printed by `tract lock`) to check the manifest "
        "itself was not rewritten",
    }[result.anchored_by]
    lines = [
        f"Lock {result.lock_id} of {result.study} at {result.location}: "
        f"{len(result.row_counts)} Parquet files, every sha256 verified against the manifest; "
        + anchor,
        "",
        *(f"  {name:<34} {rows:>9} rows" for name, rows in sorted(result.row_counts.items())),
        "",
        report_text(result.report),
        "",
        "Recomputed from the locked files: "
        + (
            "identical to the report frozen with the lock"
            if result.reproduced
            else "DIFFERS from the report frozen with the lock (rule-set code changed?)"
        ),
    ]
    return "\n".join(lines)


@click.command()
@click.option("--store", required=True, help="s3://BUCKET[/prefix] or 'local' (with --home).")
@click.option("--home", default=None, help="Platform home, for a local store.")
@click.option("--study", required=True)
@click.option("--lock", "lock_id", required=True, help="The lock id to read.")
@click.option(
    "--receipt",
    help="The lock's receipt (sha256 of its manifest, as `tract lock` printed it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def main(
    store: str, home: str | None, study: str, lock_id: str, receipt: str | None, as_json: bool
) -> None:
    """Read a locked snapshot, verified, and print the trial's tables."""
    try:
        result = run_job(Settings.from_env(store=store, home=home), study, lock_id, receipt)
    except TractError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(result.__dict__, indent=2, default=str))
    else:
        click.echo(render(result))


if __name__ == "__main__":
    main()
