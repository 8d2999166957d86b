"""Sign-in throttling that no stranger can turn into a denial of service.

Failed sign-ins within a window are counted three ways:

- per account and client address: past ``per_pair`` failures that address is locked out of
  that account. A stranger guessing from elsewhere locks only themselves out; the owner,
  from their own address, is unaffected.
- per client address, over every account name (known or not): past ``per_client`` the
  address is throttled, so one address cannot spray guesses over the committee.
- per account, over every address: past ``per_account`` (much higher) the account refuses
  addresses it has never signed in from (in ``trusted_days``), capping a distributed attack
  while the owner still signs in from an address they used before.

Every attempt is counted *before* its password is checked, in one SQLite transaction
(``BEGIN IMMEDIATE``) that reads the counts and records the attempt, so N concurrent wrong
passwords followed by the right one cannot get past the limit: the right one finds the wrong
ones already counted. A success removes its own record and the failures of that account from
that address. Refused attempts are not recorded, so a stranger's persistence neither extends
anyone's lockout nor grows the file; rows older than the window are pruned.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.errors import SignInRefusedError

# Every name that cannot be a user name is counted under this one key (bounded rows).
INVALID_NAME = "(not a user name)"
MAX_CLIENT = 64  # an IPv6 address is at most 45 characters

SCHEMA = """
DROP TABLE IF EXISTS failed_sign_ins;
CREATE TABLE IF NOT EXISTS sign_in_attempts (
    id INTEGER PRIMARY KEY, account TEXT NOT NULL, client TEXT NOT NULL, at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sign_in_attempts_pair ON sign_in_attempts (account, client, at);
CREATE INDEX IF NOT EXISTS sign_in_attempts_client ON sign_in_attempts (client, at);
CREATE INDEX IF NOT EXISTS sign_in_attempts_at ON sign_in_attempts (at);
CREATE TABLE IF NOT EXISTS sign_in_clients (
    account TEXT NOT NULL, client TEXT NOT NULL, last_success TEXT NOT NULL,
    PRIMARY KEY (account, client)
);
"""


@dataclass(frozen=True)
class Limits:
    per_pair: int = 5
    per_client: int = 20
    per_account: int = 100
    window: timedelta = timedelta(minutes=15)
    trusted_days: int = 30


@dataclass(frozen=True)
class Counts:
    """Failures in the window: this account from this address, this address, this account."""

    pair: int
    client: int
    account: int
    known_client: bool


def refusal(counts: Counts, limits: Limits) -> str | None:
    """Why an attempt is refused before its password is checked (for the audit), or None."""
    minutes = int(limits.window.total_seconds() // 60)
    if counts.pair >= limits.per_pair:
        return (
            f"{counts.pair} failed sign-ins for this account from this address in "
            f"{minutes} minutes; locked out"
        )
    if counts.client >= limits.per_client:
        return f"{counts.client} failed sign-ins from this address in {minutes} minutes; throttled"
    if counts.account >= limits.per_account and not counts.known_client:
        return (
            f"{counts.account} failed sign-ins for this account from all addresses in "
            f"{minutes} minutes; new addresses refused"
        )
    return None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SignInThrottle:
    """The counters of one users file (its own tables, its own short transactions)."""

    def __init__(self, path: Path, limits: Limits) -> None:
        self.path, self.limits = path, limits
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.executescript(SCHEMA)
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: the write lock is taken before the counts are read."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def reserve(self, account: str, client: str, now: datetime | None = None) -> None:
        """Count this attempt as a failure now, or raise :class:`SignInRefusedError`."""
        now = now or datetime.now(UTC)
        client = client[:MAX_CLIENT]
        since = _iso(now - self.limits.window)
        with self._transaction() as db:
            db.execute("DELETE FROM sign_in_attempts WHERE at <= ?", (since,))
            counts = Counts(
                pair=db.execute(
                    "SELECT COUNT(*) FROM sign_in_attempts WHERE account = ? AND client = ?",
                    (account, client),
                ).fetchone()[0],
                client=db.execute(
                    "SELECT COUNT(*) FROM sign_in_attempts WHERE client = ?", (client,)
                ).fetchone()[0],
                account=db.execute(
                    "SELECT COUNT(*) FROM sign_in_attempts WHERE account = ?", (account,)
                ).fetchone()[0],
                known_client=db.execute(
                    "SELECT 1 FROM sign_in_clients WHERE account = ? AND client = ? "
                    "AND last_success > ?",
                    (account, client, _iso(now - timedelta(days=self.limits.trusted_days))),
                ).fetchone()
                is not None,
            )
            reason = refusal(counts, self.limits)
            if reason is None:
                db.execute(
                    "INSERT INTO sign_in_attempts (account, client, at) VALUES (?, ?, ?)",
                    (account, client, _iso(now)),
                )
        if reason is not None:
            raise SignInRefusedError(reason)

    def succeeded(self, account: str, client: str, now: datetime | None = None) -> None:
        """The password was right: this account's failures from this address are forgotten
        and the address is one the account signs in from."""
        now = now or datetime.now(UTC)
        client = client[:MAX_CLIENT]
        with self._transaction() as db:
            db.execute(
                "DELETE FROM sign_in_attempts WHERE account = ? AND client = ?", (account, client)
            )
            db.execute(
                "INSERT INTO sign_in_clients VALUES (?, ?, ?) ON CONFLICT (account, client) "
                "DO UPDATE SET last_success = excluded.last_success",
                (account, client, _iso(now)),
            )
            db.execute(
                "DELETE FROM sign_in_clients WHERE last_success <= ?",
                (_iso(now - timedelta(days=self.limits.trusted_days)),),
            )
