"""The log's record of each account, and the check that a signature rests on it.

The user store (``<home>/web/users.db``) is a file: whoever can write the home could raise a
role there, replace a member's password hash with one they know, or insert a user, and then
sign as that account. So every change `tract users` makes is also published to the chained log
as an ``account`` event (role, printed name, active, a digest of the password hash), and a
signature is made only when the account in the store is the one the log last recorded. An
account changed in the file signs nothing until an administrator records it in the open
(`tract users record`, which the audit trail shows), and `tract verify` names every account
that differs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import polars as pl

from services.audit import PLATFORM_WIDE
from services.events import Event, make_event, utc_now
from services.signatures import Account, Directory, SignatureRefusedError
from services.state.records import Records

ACCOUNT_FIELDS = ("role", "full_name", "active", "credential", "temporary", "chair")
"""What a signature rests on; ``credential`` is a digest of the stored password hash,
``temporary`` says an administrator set that password (it signs nothing until changed),
``chair`` that the account chairs the committee (it assigns conflicts)."""

ACCOUNT_LABELS = {
    "role": "role",
    "full_name": "printed name",
    "active": "active flag",
    "credential": "password hash",
    "temporary": "temporary-password flag",
    "chair": "chair flag",
}


class AccountStore(Directory, Protocol):
    """The user store as :mod:`services.accounts` reads it (``services.users.UserStore``)."""

    def accounts(self, username: str | None = None) -> dict[str, dict[str, Any]]: ...


def account_event(username: str, account: Mapping[str, Any], action: str, by: str) -> Event:
    """The log's record of ``username`` as the store holds it after ``action``."""
    payload = {
        "username": username,
        **{name: account[name] for name in ACCOUNT_FIELDS},
        "action": action,
        "by": by,
        "at": utc_now(),
    }
    return make_event("account", PLATFORM_WIDE, "", payload, uuid.uuid4().hex)


def account_events(users: AccountStore, names: Iterable[str], action: str, by: str) -> list[Event]:
    """The log's records of ``names`` as ``users`` holds them now (``action``, made ``by``)."""
    stored = users.accounts()
    return [account_event(name, stored[name], action, by) for name in names]


def chosen_by_owner(users: AccountStore, username: str) -> list[Event]:
    """The account's record once its owner chose their own password: written by
    ``user:<name>``, so the trail tells it from an administrator's reset (``cli:<OS user>``)."""
    return account_events(users, [username], "PASSWORD", f"user:{username}")


def recorded_accounts(source: Records) -> dict[str, dict[str, Any]]:
    """The latest record of each account in the log, by username."""
    latest = (
        source.records("account", PLATFORM_WIDE)
        .sort("offset")
        .unique("username", keep="last")
        .select("username", *ACCOUNT_FIELDS)
        .with_columns(pl.col("temporary", "chair").fill_null(False))  # recorded before the flags
        .collect()
    )
    return {row.pop("username"): row for row in latest.iter_rows(named=True)}


def difference(
    username: str, stored: Mapping[str, Any] | None, recorded: Mapping[str, Any] | None
) -> str | None:
    """Why the store's account ``username`` is not the one the log records, or None."""
    if stored is None and recorded is None:
        return None
    if recorded is None:
        return f"{username} is in the user store but the log has no record of the account"
    if stored is None:
        return f"{username} is recorded in the log but missing from the user store"
    changed = [ACCOUNT_LABELS[name] for name in ACCOUNT_FIELDS if stored[name] != recorded[name]]
    if not changed:
        return None
    verb = "differs" if len(changed) == 1 else "differ"
    return (
        f"{username}'s {' and '.join(changed)} in the user store {verb} from the log's record "
        "(changed outside `tract users`)"
    )


def account_differences(users: AccountStore, source: Records) -> list[str]:
    """Every account whose store entry is not what the log last recorded (for `tract verify`)."""
    stored, recorded = users.accounts(), recorded_accounts(source)
    found = (
        difference(name, stored.get(name), recorded.get(name))
        for name in sorted({*stored, *recorded})
    )
    return [problem for problem in found if problem]


def account_problem(users: AccountStore, username: str, source: Records) -> str | None:
    """Why ``username``'s account in ``users`` is not the one the log last recorded, or None:
    the one check before a signature and a sign-in."""
    stored = users.accounts(username).get(username)
    return difference(username, stored, recorded_accounts(source).get(username))


class RecordedDirectory:
    """The user store for signing: an account signs only as the log last recorded it."""

    def __init__(self, users: AccountStore, source: Records) -> None:
        self.users, self.source = users, source

    def check_signature(self, username: str, password: str, client: str | None) -> Account:
        account = self.users.check_signature(username, password, client)
        name = account.username
        problem = account_problem(self.users, name, self.source)
        if problem:
            raise SignatureRefusedError(
                f"signature refused: {problem}. If an administrator made that change, they "
                f"record it in the audit trail with `tract users record {name}`; if nobody "
                "did, restore the user store from a backup"
            )
        return account
