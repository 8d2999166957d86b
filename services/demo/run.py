"""The demo flow: generate the scripted trial, ingest it, let the committee vote, lock, report.

The committee's decisions are signed votes like any trial's: the demo registers its three
committee members (with a fixed password, printed, for the demo only) and each member named
by a scripted decision signs their own vote. Its data manager signs the lock the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from services.demo.trial import DEMO_DECISIONS, DEMO_STUDY, ScriptedDecision, write_demo_trial
from services.platform import Platform
from services.signatures import LOCK, Credentials, Directory, sign_as

DEMO_LOCK = "DEMO-PRIMARY-LOCK"
DEMO_PASSWORD = "demo-committee-password"
"""The demo committee's password: fixed and printed, because this is a demo (never a trial)."""
DEMO_COMMITTEE = {
    "dr.ahmadi": "Dr Leila Ahmadi",
    "dr.sato": "Dr Kenji Sato",
    "dr.novak": "Dr Petra Novak",
}
DEMO_DATA_MANAGER = ("dm.demo", "Dana Demo")
"""Who locks the demo (a data manager, the same demo-only password)."""


def demo_committee(platform: Platform, hasher: Any = None) -> Directory:
    """The home's user store with the demo's committee members registered (kept if present)."""
    people = {n: ("committee", p) for n, p in DEMO_COMMITTEE.items()}
    return _demo_users(platform, people, hasher)


def _demo_users(
    platform: Platform, people: dict[str, tuple[str, str]], hasher: Any = None
) -> Directory:
    """The home's user store with ``people`` (name: role, printed name) registered with the
    demo-only password (those present are kept), each recorded in the log as added."""
    from services.accounts import account_events
    from services.users import UserStore

    users = UserStore.for_home(platform.home, hasher=hasher)
    known = {u.username for u in users.users() if u.active}
    added = [name for name in people if name not in known]
    for name in added:
        role, printed = people[name]
        users.add(name, role, DEMO_PASSWORD, printed, temporary=False)
    platform.record(account_events(users, added, "ADD", "demo script"))
    return users


def decide_scripted(
    platform: Platform, scripted: ScriptedDecision, directory: Directory
) -> list[dict[str, Any]]:
    """Each member the scripted decision names signs their vote on the open conflict it is
    written for (if any); returns every vote with what it brought about."""
    open_conflicts = platform.outcomes(DEMO_STUDY, tables=("conflicts",)).open_conflicts()
    match = open_conflicts.filter(
        (pl.col("type") == scripted.conflict_type)
        & (pl.col("subject_id") == scripted.subject_id)
        & (pl.col("tract_id") == scripted.tract_id)
    )
    return [
        platform.vote(
            conflict_id,
            status=scripted.status,
            rationale=scripted.rationale,
            maps_to=scripted.maps_to,
            study=DEMO_STUDY,
            credentials=Credentials(member, DEMO_PASSWORD, "cli", "demo script"),
            directory=directory,
        )
        for conflict_id in match["conflict_id"]
        for member in scripted.members
    ]


def decide_demo_conflicts(platform: Platform, directory: Directory | None = None) -> list[dict]:
    """Every scripted decision of the demo trial, in order, as its members' signed votes."""
    directory = directory or demo_committee(platform)
    return [
        vote
        for scripted in DEMO_DECISIONS
        for vote in decide_scripted(platform, scripted, directory)
    ]


DEMO_QUERIES_REASON = (
    "demo: the scripted bad rows stay open as site queries, to show them in the queries list"
)


def run_demo(platform: Platform, folder: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Idempotent: running it again ingests duplicates, decides nothing new and finds the lock."""
    files = write_demo_trial(folder)
    say(f"Ingesting the demo trial's transfer files from {folder}")
    outcome = platform.ingest(DEMO_STUDY, list(files.values()))
    for report in outcome.reports:
        say(f"  {report.summary()}")
    open_count = platform.outcomes(DEMO_STUDY, tables=("conflicts",)).open_conflicts().height
    say(f"{open_count} open conflict(s) go to the adjudication committee")
    members = ", ".join(f"{n} ({p})" for n, p in DEMO_COMMITTEE.items())
    say(f"Demo committee: {members}; demo-only password {DEMO_PASSWORD!r}")
    for vote in decide_demo_conflicts(platform):
        decision = vote["decision"]
        where = f"{vote['conflict_type']} {vote['subject_id']}/{vote['tract_id']}"
        say(f"  {where}: signed by {vote['printed_name']} ({vote['meaning']})")
        if decision:
            say(f"    decision {decision['decision_id']} in force: {decision['status']}")
    manager, printed = DEMO_DATA_MANAGER
    directory = _demo_users(platform, {manager: ("data_manager", printed)})
    signer = Credentials(manager, DEMO_PASSWORD, "cli", "demo script")
    manifest = platform.lock(
        DEMO_STUDY,
        DEMO_LOCK,
        "Primary analysis: demo database lock",
        manager,
        open_queries_reason=DEMO_QUERIES_REASON,
        sign=sign_as(platform.signers(directory), signer, LOCK),
    )
    pending = manifest["open_queries"]["not_closed"]
    say(
        f"Database locked as {DEMO_LOCK} ({len(manifest['files'])} files, sha256 verified), "
        f"signed by {printed} ({manager}), the demo's data manager"
    )
    say(f"  with {pending} site queries not closed; reason recorded: {DEMO_QUERIES_REASON}\n")
    return platform.report(DEMO_STUDY, DEMO_LOCK)
