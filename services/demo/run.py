"""The demo flow: generate the scripted trial, ingest it, let the committee decide, lock, report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from services.demo.trial import DEMO_DECISIONS, DEMO_STUDY, ScriptedDecision, write_demo_trial
from services.platform import Platform

DEMO_LOCK = "DEMO-PRIMARY-LOCK"


def decide_scripted(
    platform: Platform, scripted: ScriptedDecision, recorded_by: str = "demo.committee"
) -> list[dict[str, Any]]:
    """The committee's scripted decision on the open conflict it is written for (if any)."""
    open_conflicts = platform.adjudicate(DEMO_STUDY).open_conflicts()
    match = open_conflicts.filter(
        (pl.col("type") == scripted.conflict_type)
        & (pl.col("subject_id") == scripted.subject_id)
        & (pl.col("tract_id") == scripted.tract_id)
    )
    return [
        platform.decide(
            conflict_id,
            status=scripted.status,
            rationale=scripted.rationale,
            members=list(scripted.members),
            recorded_by=recorded_by,
            maps_to=scripted.maps_to,
            study=DEMO_STUDY,
        )
        for conflict_id in match["conflict_id"]
    ]


def decide_demo_conflicts(
    platform: Platform, recorded_by: str = "demo.committee"
) -> list[dict[str, Any]]:
    """Every scripted decision of the demo trial, in order."""
    return [
        d for scripted in DEMO_DECISIONS for d in decide_scripted(platform, scripted, recorded_by)
    ]


def run_demo(platform: Platform, folder: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Idempotent: running it again ingests duplicates, decides nothing new and finds the lock."""
    files = write_demo_trial(folder)
    say(f"Ingesting the demo trial's transfer files from {folder}")
    outcome = platform.ingest(DEMO_STUDY, list(files.values()))
    for report in outcome.reports:
        say(f"  {report.summary()}")
    say(
        f"{platform.adjudicate(DEMO_STUDY).open_conflicts().height} open conflict(s) go to the adjudication committee"
    )
    for decision in decide_demo_conflicts(platform):
        say(
            f"  {decision['conflict_type']} {decision['subject_id']}/{decision['tract_id']}: {decision['status']}"
        )
    manifest = platform.lock(
        DEMO_STUDY, DEMO_LOCK, "Primary analysis: demo database lock", "dm.demo"
    )
    say(f"Database locked as {DEMO_LOCK} ({len(manifest['files'])} files, sha256 verified)\n")
    return platform.report(DEMO_STUDY, DEMO_LOCK)
