"""The platform's users: who they are, their role, printed name and password, and their
sessions, kept in one SQLite file under the platform home (``web/users.db``).

The store lives here, below every front end, because users sign in the CLI, the DAG and the web
alike: ``tract vote --as`` and ``tract lock --for-airflow`` re-check a password here
(:meth:`UserStore.check_signature`, the :class:`services.signatures.Directory` every front end
signs through), the lock DAG asks here whether a lock's signer may still lock, and the web page
signs people in here. The web keeps only what is its own: cookies and CSRF checks
(``services/web/auth.py``).

Passwords are hashed with argon2id (argon2-cffi); only a hash of each session token is stored.
Every session has its own CSRF token, which every form posts back. The file holds hashes and
live CSRF tokens, so it and its folder are owner-only (0600 in 0700), tightened when found
looser. Failed sign-ins are throttled by account, by client address and by both
(``services/throttle.py``).

Each user has a printed (full) name, which their electronic signatures show; a signature
re-checks the password here, counted by the same throttle as a sign-in. Every user name goes
through one normaliser (:func:`services.usernames.normalise_username`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from services.errors import SignInRefusedError, UserError, WebConfigError
from services.files import private_database, private_dir
from services.roles import ROLES, can
from services.signatures import SignatureRefusedError
from services.throttle import INVALID_NAME, Limits, SignInThrottle
from services.usernames import (
    InvalidNameError,
    normalise_printed_name,
    normalise_username,
    same_printed_name,
)

MIN_PASSWORD = 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    full_name TEXT NOT NULL DEFAULT '', temporary INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chairs (username TEXT PRIMARY KEY, since TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY, username TEXT NOT NULL, csrf_token TEXT NOT NULL,
    created_at TEXT NOT NULL, expires_at TEXT NOT NULL
);
"""


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    username: str
    role: str
    active: bool
    created_at: str
    full_name: str = ""
    """The printed name a signature shows (``Dr Anna Adams``)."""
    temporary: bool = False
    """The password was set by an administrator: it signs nothing until its owner changes it."""


@dataclass(frozen=True)
class Session:
    """A signed-in person: the role is read from the user table on every request, so a role
    change or a removal applies at once."""

    username: str
    role: str
    csrf_token: str
    expires_at: str
    full_name: str = ""
    temporary: bool = False
    """Signed in with a password an administrator set: only changing it is open."""

    def can(self, permission: str) -> bool:
        return can(self.role, permission)

    @property
    def reference(self) -> str:
        """Names this session in a signature without revealing anything that opens it (a
        digest of its CSRF token, which is never shown)."""
        return "s-" + hashlib.sha256(f"tract-session|{self.csrf_token}".encode()).hexdigest()[:12]


def users_file(home: Path) -> Path:
    """Where a platform home keeps its users and sessions."""
    return Path(home) / "web" / "users.db"


@dataclass(frozen=True)
class UserSettings:
    """What the user store reads: its file, a session's lifetime and the sign-in limits (see
    ``services/throttle.py``), from the ``TRACT_WEB_*`` variables the web page documents.

    The CLI and the DAGs open the store with these alone (:meth:`UserStore.for_home`); the web
    page's settings (``services.web.settings.WebSettings``) extend them with its own, its cookie
    secret among them, so every front end counts failed sign-ins and signatures alike.
    """

    users_db: Path = Path("tract-data/web/users.db")
    session_hours: float = 12.0
    max_failed_sign_ins: int = 5
    max_failed_per_client: int = 20
    max_failed_per_account: int = 100
    lockout_minutes: int = 15

    ENV: ClassVar[dict[str, str]] = {
        "session_hours": "TRACT_WEB_SESSION_HOURS",
        "max_failed_sign_ins": "TRACT_WEB_MAX_FAILED_SIGN_INS",
        "max_failed_per_client": "TRACT_WEB_MAX_FAILED_PER_CLIENT",
        "max_failed_per_account": "TRACT_WEB_MAX_FAILED_PER_ACCOUNT",
        "lockout_minutes": "TRACT_WEB_LOCKOUT_MINUTES",
    }

    @classmethod
    def from_env(
        cls, home: Path, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> UserSettings:
        """Settings from the environment; explicit ``overrides`` win (tests, CLI options)."""
        values = read_settings(cls.ENV, environ, overrides, user_setting)
        values.setdefault("users_db", users_file(home))
        return cls(**values)  # type: ignore[arg-type]


def read_settings(
    variables: Mapping[str, str],
    environ: Mapping[str, str] | None,
    overrides: Mapping[str, object],
    convert: Callable[[str, object], object],
) -> dict[str, object]:
    """The settings that ``environ`` (default: the process's) sets, named field: variable in
    ``variables``, with ``overrides`` winning, each converted by ``convert(name, value)``. A
    value it refuses (ValueError) is a :class:`WebConfigError` that names its variable."""
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {
        name: env[var] for name, var in variables.items() if env.get(var, "") != ""
    }
    raw |= {k: v for k, v in overrides.items() if v is not None}
    values: dict[str, object] = {}
    for name, value in raw.items():
        try:
            values[name] = convert(name, value)
        except ValueError:
            raise WebConfigError(
                f"{variables.get(name, name)}={value!r} is not a valid value for {name}; "
                "use a non-negative number (1/0 for TRACT_WEB_COMMITTEE_SEES_RESULTS, "
                "1/0/auto for TRACT_WEB_SECURE_COOKIES)"
            ) from None
    return values


def user_setting(name: str, value: object) -> object:
    """``value`` as the user setting ``name`` wants it (ValueError when it cannot be used);
    the value of any other setting as it is."""
    if name == "session_hours":
        hours = float(str(value))
        if hours <= 0:
            raise ValueError(value)
        return hours
    if name in UserSettings.ENV:
        return whole_number(value)
    return value


def whole_number(value: object) -> int:
    """``value`` as a whole number of at least 0 (ValueError otherwise)."""
    number = int(str(value))
    if number < 0:
        raise ValueError(value)
    return number


class UserStore:
    """Users and sessions of one platform home."""

    def __init__(
        self,
        path: Path | str,
        hasher: PasswordHasher | None = None,
        session_hours: float = 12.0,
        max_failed_sign_ins: int = 5,
        lockout_minutes: int = 15,
        max_failed_per_client: int = 20,
        max_failed_per_account: int = 100,
    ) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        private_database(self.path)
        self.hasher = hasher or PasswordHasher()
        self.session_hours = session_hours
        with self._db() as db:
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(users)")}
            if "full_name" not in columns:  # a users file from before printed names
                db.execute("ALTER TABLE users ADD COLUMN full_name TEXT NOT NULL DEFAULT ''")
            if "temporary" not in columns:  # from before temporary passwords: each is its own
                db.execute("ALTER TABLE users ADD COLUMN temporary INTEGER NOT NULL DEFAULT 0")
        self.throttle = SignInThrottle(
            self.path,
            Limits(
                per_pair=max_failed_sign_ins,
                per_client=max_failed_per_client,
                per_account=max_failed_per_account,
                window=timedelta(minutes=lockout_minutes),
            ),
        )

    @classmethod
    def for_home(
        cls,
        home: Path,
        hasher: PasswordHasher | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> UserStore:
        """The store of a platform home, set by the ``TRACT_WEB_*`` variables it reads
        (:class:`UserSettings`): what the CLI and the DAGs open, without the web page's settings
        (no cookie secret is made)."""
        return cls.from_settings(UserSettings.from_env(home, environ), hasher=hasher)

    @classmethod
    def from_settings(
        cls, settings: UserSettings, hasher: PasswordHasher | None = None
    ) -> UserStore:
        return cls(
            settings.users_db,
            hasher=hasher,
            session_hours=settings.session_hours,
            max_failed_sign_ins=settings.max_failed_sign_ins,
            lockout_minutes=settings.lockout_minutes,
            max_failed_per_client=settings.max_failed_per_client,
            max_failed_per_account=settings.max_failed_per_account,
        )

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection per operation: safe from any thread of the server."""
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    # users ------------------------------------------------------------------------------------
    def add(
        self,
        username: str,
        role: str,
        password: str,
        full_name: str = "",
        temporary: bool = True,
    ) -> User:
        """A new user (or a removed one back, with a new role and password). Without a
        ``full_name`` the user can sign in and read but cannot sign (set it later).
        ``temporary``: the password is the administrator's, which its owner must change before
        signing anything (``temporary=False``: the person chose it, e.g. typed it themselves)."""
        username = _username(username)
        self._check_role(role)
        self._check_password(password)
        printed = self._check_full_name(full_name, username) if full_name.strip() else ""
        now = _iso(_now())
        with self._db() as db:
            row = db.execute("SELECT active FROM users WHERE username = ?", (username,)).fetchone()
            if row and row[0]:
                raise UserError(
                    f"user {username} exists; change the password with "
                    f"`tract users passwd {username}` or remove the user first"
                )
            db.execute(
                "INSERT INTO users (username, role, password_hash, active, created_at, "
                "updated_at, full_name, temporary) VALUES (?, ?, ?, 1, ?, ?, ?, ?) ON CONFLICT "
                "(username) DO UPDATE SET role = excluded.role, password_hash = "
                "excluded.password_hash, active = 1, updated_at = excluded.updated_at, "
                "full_name = excluded.full_name, temporary = excluded.temporary",
                (username, role, self.hasher.hash(password), now, now, printed, int(temporary)),
            )
        return self.user(username)

    def set_full_name(self, username: str, full_name: str) -> User:
        """The printed name the user's signatures show from now on (earlier signatures keep
        the name they were made with: it is inside each signed record)."""
        user = self.user(username)
        printed = self._check_full_name(full_name, user.username)
        with self._db() as db:
            db.execute(
                "UPDATE users SET full_name = ?, updated_at = ? WHERE username = ?",
                (printed, _iso(_now()), user.username),
            )
        return self.user(user.username)

    def _check_full_name(self, full_name: str, username: str) -> str:
        """A printed name no other active user has: two people who read alike on a signature
        could not be told apart."""
        try:
            printed = normalise_printed_name(full_name)
        except InvalidNameError as exc:
            raise UserError(str(exc)) from None
        for other in self.users():
            taken = other.active and other.username != username
            if taken and same_printed_name(other.full_name, printed):
                raise UserError(
                    f"the printed name {printed!r} is already {other.username}'s; give "
                    "each person a name that tells them apart (e.g. with a middle initial)"
                )
        return printed

    def set_password(self, username: str, password: str, temporary: bool = True) -> User:
        """A new password set by an administrator (``temporary``: its owner must change it
        before signing); the user's open sessions end."""
        self._check_password(password)
        user = self.user(username)
        with self._db() as db:
            db.execute(
                "UPDATE users SET password_hash = ?, temporary = ?, updated_at = ? "
                "WHERE username = ?",
                (self.hasher.hash(password), int(temporary), _iso(_now()), user.username),
            )
            db.execute("DELETE FROM sessions WHERE username = ?", (user.username,))
        return self.user(user.username)

    def change_password(
        self, username: str, current: str, new: str, client: str | None = None
    ) -> User:
        """The owner's own new password, the current one checked (and counted in the throttle
        like a sign-in): from now on only they know it. Every session of theirs ends."""
        try:
            user = self.authenticate(username, current, client)
        except SignInRefusedError as exc:
            raise UserError(f"password not changed: {exc.reason}") from None
        self._check_password(new)
        if new == current:
            raise UserError("password not changed: choose a password other than the current one")
        return self.set_password(user.username, new, temporary=False)

    def remove(self, username: str) -> User:
        """Deactivate (the name stays reserved, so the audit trail keeps meaning one person)."""
        user = self.user(username)
        with self._db() as db:
            db.execute(
                "UPDATE users SET active = 0, updated_at = ? WHERE username = ?",
                (_iso(_now()), user.username),
            )
            db.execute("DELETE FROM sessions WHERE username = ?", (user.username,))
        return self.user(username)

    def user(self, username: str) -> User:
        with self._db() as db:
            row = db.execute(
                "SELECT username, role, active, created_at, full_name, temporary FROM users "
                "WHERE username = ?",
                (_username(username, unknown=True),),
            ).fetchone()
        if row is None:
            raise UserError(f"no user {username!r}; list them with `tract users list`")
        return User(row[0], row[1], bool(row[2]), row[3], row[4], bool(row[5]))

    def users(self) -> list[User]:
        with self._db() as db:
            rows = db.execute(
                "SELECT username, role, active, created_at, full_name, temporary FROM users "
                "ORDER BY username"
            ).fetchall()
        return [User(r[0], r[1], bool(r[2]), r[3], r[4], bool(r[5])) for r in rows]

    def accounts(self, username: str | None = None) -> dict[str, dict[str, Any]]:
        """What a signature rests on, per username (of ``username`` only, when given): role,
        printed name, active, ``temporary`` (the password is an administrator's),
        ``credential``, a digest of the stored password hash (which says the password changed,
        never what it is), and ``chair`` (it chairs the committee: services/web/chairs.py).
        ``services.accounts`` compares it with the log's record."""
        query = (
            "SELECT username, role, full_name, active, password_hash, temporary, "
            "username IN (SELECT username FROM chairs) FROM users"
        )
        with self._db() as db:
            rows = (
                db.execute(f"{query} WHERE username = ?", (username,))
                if username is not None
                else db.execute(query)
            ).fetchall()
        return {
            r[0]: {
                "role": r[1],
                "full_name": r[2] or "",
                "active": bool(r[3]),
                "credential": _sha(r[4]),
                "temporary": bool(r[5]),
                "chair": bool(r[6]),
            }
            for r in rows
        }

    def chair_flags(self) -> set[str]:
        """Usernames flagged as the committee's chair (whatever their role now: see
        ``services.web.chairs``, which sets the flag and says who chairs)."""
        with self._db() as db:
            return {row[0] for row in db.execute("SELECT username FROM chairs")}

    def flag_chair(self, username: str, on: bool) -> None:
        """Set (or clear) the chair flag of ``username`` (already normalised)."""
        with self._db() as db:
            if on:
                since = _iso(_now())
                db.execute("INSERT OR IGNORE INTO chairs VALUES (?, ?)", (username, since))
            else:
                db.execute("DELETE FROM chairs WHERE username = ?", (username,))

    def with_role(self, role: str) -> list[str]:
        """Active usernames holding ``role`` (the committee members offered on the form)."""
        return [u.username for u in self.users() if u.active and u.role == role]

    @staticmethod
    def _check_role(role: str) -> None:
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}, got {role!r}")

    @staticmethod
    def _check_password(password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise UserError(f"a password needs at least {MIN_PASSWORD} characters")

    # sign-in and sessions ---------------------------------------------------------------------
    def authenticate(self, username: str, password: str, client: str | None = None) -> User:
        """The user, or :class:`SignInRefusedError` whose ``reason`` says why (for the audit).

        ``client`` is the address the attempt came from. The attempt is counted (and may be
        refused) before the password is checked: see ``services/throttle.py``.
        """
        try:
            name = account = normalise_username(username)
        except InvalidNameError:
            name, account = "", INVALID_NAME
        client = client or "unknown"
        self.throttle.reserve(account, client)
        if account == INVALID_NAME:  # no user can have it: nothing to look up or hash
            raise SignInRefusedError("unknown user")
        with self._db() as db:
            row = db.execute(
                "SELECT password_hash, active FROM users WHERE username = ?", (name,)
            ).fetchone()
        try:
            self.hasher.verify(row[0] if row else self.unknown_user_hash(), password)
            ok = row is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if row is None:
            raise SignInRefusedError("unknown user")
        if not ok:
            raise SignInRefusedError("wrong password")
        if not row[1]:
            raise SignInRefusedError("account removed")
        # No rehash on sign-in: the log records a digest of this hash (services/accounts.py),
        # so new hashing costs apply from the user's next password change.
        self.throttle.succeeded(account, client)
        return self.user(name)

    def unknown_user_hash(self) -> str:
        """The hash a password is checked against when its user is unknown, so the time taken
        does not tell. Made once per process and hashing cost (0.2 s): on first use, not by
        every command that opens the store; the web page makes it as it starts, so that no
        sign-in waits for it."""
        h = self.hasher
        return _unknown_user_hash(h.time_cost, h.memory_cost, h.parallelism, h.hash_len, h.type)

    def check_signature(self, username: str, password: str, client: str | None) -> User:
        """The account signing, its password checked again now (:mod:`services.signatures`);
        a wrong password counts in the throttle like a failed sign-in."""
        try:
            user = self.authenticate(username, password, client)
        except SignInRefusedError as exc:
            detail = (
                exc.reason
                if exc.reason not in ("unknown user", "wrong password")
                else "unknown user or wrong password"
            )
            raise SignatureRefusedError(f"signature refused: {detail}") from None
        if user.temporary:
            raise SignatureRefusedError(
                f"signature refused: {user.username}'s password was set by an administrator; "
                f"{user.username} changes it first (on the web page, or `tract password --as "
                f"{user.username}`), so that only they can sign"
            )
        return user

    def open_session(self, user: User) -> str:
        """A fresh session token (a new one at every sign-in: no session fixation)."""
        token = secrets.token_urlsafe(32)
        now = _now()
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE expires_at < ?", (_iso(now),))
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                (
                    _sha(token),
                    user.username,
                    secrets.token_urlsafe(32),
                    _iso(now),
                    _iso(now + timedelta(hours=self.session_hours)),
                ),
            )
        return token

    def session(self, token: str) -> Session | None:
        """The live session of ``token``, if any (expired, removed users: none)."""
        with self._db() as db:
            row = db.execute(
                "SELECT s.username, u.role, s.csrf_token, s.expires_at, u.full_name, u.temporary "
                "FROM sessions s "
                "JOIN users u ON u.username = s.username "
                "WHERE s.token_sha256 = ? AND u.active = 1 AND s.expires_at > ?",
                (_sha(token), _iso(_now())),
            ).fetchone()
        return None if row is None else Session(*row[:5], temporary=bool(row[5]))

    def close_session(self, token: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_sha(token),))


def _username(name: str, unknown: bool = False) -> str:
    """The normalised user name, or :class:`UserError` (with ``unknown``, a name that cannot
    be one is looked up as itself and simply not found)."""
    try:
        return normalise_username(name)
    except InvalidNameError as exc:
        if unknown:
            return name
        raise UserError(str(exc)) from None


@functools.cache
def _unknown_user_hash(
    time_cost: int, memory_cost: int, parallelism: int, hash_len: int, kind: Type
) -> str:
    hasher = PasswordHasher(time_cost, memory_cost, parallelism, hash_len, type=kind)
    return hasher.hash(secrets.token_urlsafe(16))
