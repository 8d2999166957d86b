"""Signing in tests: registered people with printed names and a password, and the votes and
approvals they sign through the platform (the same path as `tract vote` and the web page).

argon2id runs with tiny costs here: the same code path, without 50 ms per signature.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher

from services.accounts import account_events
from services.platform import Platform
from services.signatures import LOCK, Credentials, sign_as
from services.users import UserStore
from services.web.settings import WebSettings

PASSWORD = "correct horse battery"
PEOPLE = {
    "dr.a": ("committee", "Dr Alice Able"),
    "dr.b": ("committee", "Dr Bruno Baker"),
    "dr.c": ("committee", "Dr Chloe Clarke"),
    "dm.jones": ("data_manager", "Dana Jones"),
    "qa.lee": ("approver", "Quinn Lee"),
    "root.admin": ("admin", "Ada Admin"),
    "mon.kim": ("monitor", "Min Kim"),
}


def fast_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def directory(
    home: Path, people: dict[str, tuple[str, str]] | None = None, platform: Any = None
) -> UserStore:
    """The home's user store with ``people`` (default :data:`PEOPLE`) registered, each with a
    password of their own (as after their first sign-in: an administrator's signs nothing) and
    recorded in the log as `tract users add` records it (through ``platform``, else the home's
    embedded log), so they can sign."""
    users = UserStore.from_settings(WebSettings.from_env(home), hasher=fast_hasher())
    known = {u.username for u in users.users()}
    added = [name for name in (people or PEOPLE) if name not in known]
    for name in added:
        role, printed = (people or PEOPLE)[name]
        users.add(name, role, PASSWORD, printed, temporary=False)  # as chosen by each
    if added:
        (platform or Platform.embedded(home)).record(
            account_events(users, added, "ADD", "cli:test")
        )
    return users


PASSWORD_LINE = PASSWORD + "\n"
"""What ``--password-stdin`` reads for anyone in :data:`PEOPLE`."""


def as_data_manager(home: Path, platform: Any = None) -> tuple[str, ...]:
    """The options that sign a data manager's command (``tract lock``) as dm.jones of
    :data:`PEOPLE`, registered in ``home`` first (recorded through ``platform``, else the
    home's embedded log); give :data:`PASSWORD_LINE` on stdin."""
    directory(home, {"dm.jones": PEOPLE["dm.jones"]}, platform)
    return ("--as", "dm.jones", "--password-stdin")


def signed_as(name: str, password: str = PASSWORD) -> Credentials:
    return Credentials(name, password, "cli", "test")


def vote(platform: Platform, conflict_id: str, voter: str, **choice: Any) -> dict[str, Any]:
    """One member's signed vote (``choice``: status, rationale, maps_to, study ...)."""
    choice = {"rationale": "Reviewed by the committee.", "status": None} | choice
    return platform.vote(
        conflict_id,
        credentials=signed_as(voter),
        directory=directory(platform.home, platform=platform),
        **choice,
    )


def decide(
    platform: Platform,
    conflict_id: str,
    members: Iterable[str] = ("dr.a", "dr.b"),
    **choice: Any,
) -> dict[str, Any]:
    """Each member signs the same vote; the last result (which names the decision)."""
    results = [vote(platform, conflict_id, member, **choice) for member in members]
    return results[-1]


def unlock(
    platform: Platform,
    study: str,
    lock_id: str,
    reason: str = "late data from the site",
    requester: str = "dm.jones",
    approvers: Iterable[str] = ("qa.lee", "root.admin"),
) -> dict[str, Any] | None:
    """A signed unlock request and its approvals; the unlock record once they are complete."""
    users = directory(platform.home, platform=platform)
    asked = platform.request_unlock(study, lock_id, reason, signed_as(requester), users)
    record = None
    for approver in approvers:
        _, record = platform.approve_unlock(asked.request_id, signed_as(approver), users)
    return record


def lock_request(
    platform: Platform,
    study: str,
    lock_id: str,
    level: str = "soft",
    *,
    reason: str = "primary analysis of the completers",
    open_queries_reason: str = "",
    signer: str = "dm.jones",
) -> str:
    """A lock signed by ``signer`` for the database_lock DAG to take (as `tract lock
    --for-airflow` signs it): its request id."""
    users = directory(platform.home, platform=platform)
    asked = platform.sign_lock_request(
        study,
        lock_id,
        reason,
        signer,
        level,
        open_queries_reason=open_queries_reason,
        sign=sign_as(users, signed_as(signer), LOCK),
    )
    return str(asked["request_id"])
