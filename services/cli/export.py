"""``tract export``: the submission package of a verified lock (SDTM, ADaM, define.xml, data
dictionary). Exit code 1 when the conformance suite finds an error (nothing is written)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

KINDS = ("sdtm", "adam")


@click.command("export")
@click.argument("what", type=click.Choice(["sdtm", "adam", "all"]), default="all")
@click.option("--study", required=True, help="Study id.")
@click.option("--lock", "lock_id", required=True, help="The lock to export (read verified).")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write (empty, or holding an earlier export that is replaced).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["xpt", "json", "both"]),
    default="both",
    show_default=True,
    help="SAS XPT v5, CDISC Dataset-JSON 1.1, or both.",
)
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The rule-set file the lock used (default: the project's rules-v1.yaml).",
)
@click.option(
    "--study-meta",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="YAML overriding schemas/cdisc/study.yaml (title, sponsor, countries, visits ...).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_obj
def export(
    obj: Any,
    what: str,
    study: str,
    lock_id: str,
    out: Path,
    fmt: str,
    rules_path: Path | None,
    study_meta: Path | None,
    as_json: bool,
) -> None:
    """Write SDTM and/or ADaM (XPT, Dataset-JSON), define.xml and the data dictionary of a lock."""
    from services.adjudicator.ruleset import load_ruleset
    from services.export.package import export_lock, load_study_meta

    event = obj.platform.lock_event(study, lock_id) or {}
    result = export_lock(
        obj.platform.store,
        study,
        lock_id,
        out,
        kinds=KINDS if what == "all" else (what,),
        formats=("xpt", "json") if fmt == "both" else (fmt,),
        rules=load_ruleset(rules_path) if rules_path else None,
        study_meta=load_study_meta(study_meta),
        receipt=event.get("manifest_sha256"),
    )
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.summary())
