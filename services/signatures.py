"""Electronic signatures (21 CFR Part 11: 11.50, 11.70, 11.100, 11.200): one person signs for
themselves, by re-entering their password, with a meaning.

A signature is made here and nowhere else, by every front end alike (the web page, the CLI):

- the signer is named by their own user name (the web takes it from the session, never from
  a form field; the CLI from ``--as``), normalised by :mod:`services.usernames`;
- the password is checked again against the user store at the moment of signing (11.200(a):
  both components, every time), and a failure counts in the sign-in throttle like a failed
  sign-in, so signing cannot be used to guess passwords;
- the account must be active, hold a role that may sign for this purpose
  (:data:`SIGNING_ROLES`) and have a printed name;
- the result carries what 11.50 asks to be shown with every signed record: the printed name,
  the date and time (UTC) and the meaning ("decided CLOSED"), plus how it was signed. The
  record that carries it (a vote, an unlock request or approval) holds the signature inside
  the same event of the hash-chained log, so it cannot be moved to another record (11.70); a
  lock, and a lock raised to hard, hold theirs in the manifest whose sha256 their lock event
  records (a lock signed for Airflow is a ``lock_request`` event until the DAG takes it).

The user store is ``services.users.UserStore`` (the CLI, the DAGs and the web page share it);
this module only needs its :class:`Directory` protocol, so signing never imports the store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from services.errors import TractError
from services.usernames import InvalidNameError, normalise_username

if TYPE_CHECKING:
    import polars as pl

VOTE, REQUEST_UNLOCK, APPROVE_UNLOCK, LOCK, RAISE_LOCK, REVIEW_QUERY = (
    "vote",
    "request_unlock",
    "approve_unlock",
    "lock",
    "raise_lock",
    "review_query",
)
SIGNING_ROLES: dict[str, frozenset[str]] = {
    VOTE: frozenset({"committee"}),
    REQUEST_UNLOCK: frozenset({"data_manager", "admin"}),
    # Separation of duties: a data manager asks, people outside data management approve.
    APPROVE_UNLOCK: frozenset({"approver", "admin"}),
    # the web page's "lock" permission: the data manager answers for the lock they take
    LOCK: frozenset({"data_manager", "admin"}),
    RAISE_LOCK: frozenset({"data_manager", "admin"}),
    # the web page's "query" permission: answering, closing and reopening site queries
    REVIEW_QUERY: frozenset({"data_manager", "admin"}),
}
"""Which roles may sign for which purpose."""
PURPOSES = {
    VOTE: "a committee vote",
    REQUEST_UNLOCK: "an unlock request",
    APPROVE_UNLOCK: "an unlock approval",
    LOCK: "a database lock",
    RAISE_LOCK: "raising a lock to hard",
    REVIEW_QUERY: "a site query's answer, closing or reopening",
}


class SignatureRefusedError(TractError):
    """A signature that cannot be made: wrong password, wrong role, unknown or removed user,
    a name that is not one, or too many failures."""


class Account(Protocol):
    username: str
    role: str
    full_name: str


class Directory(Protocol):
    """The registered users (``services.users.UserStore``)."""

    def check_signature(self, username: str, password: str, client: str | None) -> Account:
        """The active account whose password this is (counted by the sign-in throttle), or
        :class:`SignatureRefusedError`."""
        ...


@dataclass(frozen=True)
class Credentials:
    """What a person gives to sign: who they are and their password, and where they sign."""

    username: str
    password: str = field(repr=False)
    via: str = "cli"
    """``web`` or ``cli``."""
    session: str = ""
    """Which sign-in or terminal this came from (``web session s-1a2b...``, ``OS user ana``)."""
    client: str | None = None
    """The client address (web) or ``cli:<OS user>``, for the throttle."""


@dataclass(frozen=True)
class Signature:
    signer: str
    printed_name: str
    role: str
    meaning: str
    signed_at: str
    signed_via: str
    authentication: str

    def manifestation(self) -> str:
        return manifestation(self.printed_name, self.signer, self.signed_at, self.meaning)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def manifestation(printed_name: str, signer: str, signed_at: object, meaning: str) -> str:
    """The signature as every display shows it (11.50): ``Dr Anna Adams (dr.adams),
    2026-11-26 10:15:02 UTC: decided CLOSED``."""
    return f"{printed_name} ({signer}), {_when(signed_at)}: {meaning}"


def manifestation_of(record: Mapping[str, Any]) -> str:
    """:func:`manifestation` of a stored signature (a :meth:`Signature.to_dict`, an unlock's
    approval row): what every display of a signed record shows."""
    return manifestation(
        record["printed_name"], record["signer"], record["signed_at"], record["meaning"]
    )


def manifestation_expr(signer: str = "signer") -> pl.Expr:
    """:func:`manifestation` over a frame with ``printed_name``, ``signer`` (or the column
    named), ``signed_at`` (a UTC timestamp) and ``meaning``."""
    import polars as pl

    return pl.concat_str(
        pl.col("printed_name"),
        pl.lit(" ("),
        pl.col(signer),
        pl.lit("), "),
        pl.col("signed_at").dt.to_string("%Y-%m-%d %H:%M:%S UTC"),
        pl.lit(": "),
        pl.col("meaning"),
    )


def _now() -> str:
    """UTC to the second, as every event's timestamps (``services.events.utc_now``)."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _when(value: object) -> str:
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")  # type: ignore[union-attr]
    return str(value).replace("T", " ").replace("Z", " UTC")


def sign_as(
    directory: Directory, credentials: Credentials, purpose: str
) -> Callable[[str], Signature]:
    """:func:`sign` bound to one person and purpose: called with the meaning once the record
    is known (a lock's, after its checks), so a refused record asks for no signature."""
    return lambda meaning: sign(directory, credentials, purpose, meaning)


def sign(
    directory: Directory,
    credentials: Credentials,
    purpose: str,
    meaning: str,
    signed_at: str | None = None,
) -> Signature:
    """Sign ``meaning`` for ``purpose`` as ``credentials.username``, or refuse with the reason."""
    try:
        name = normalise_username(credentials.username)
    except InvalidNameError as exc:
        raise SignatureRefusedError(f"signature refused: {exc}") from None
    if not credentials.password:
        raise SignatureRefusedError(
            f"signature refused: {name} must enter their password to sign {PURPOSES[purpose]}"
        )
    account = directory.check_signature(name, credentials.password, credentials.client)
    allowed = SIGNING_ROLES[purpose]
    if account.role not in allowed:
        raise SignatureRefusedError(
            f"signature refused: {name} has the role {account.role}, which may not sign "
            f"{PURPOSES[purpose]} (roles that may: {', '.join(sorted(allowed))})"
        )
    if not (account.full_name or "").strip():
        raise SignatureRefusedError(
            f"signature refused: {name} has no printed name to sign with; an administrator "
            f'sets it with `tract users set-name {name} --full-name "..."`'
        )
    how = "password re-entered" + (f" ({credentials.session})" if credentials.session else "")
    return Signature(
        signer=account.username,
        printed_name=account.full_name,
        role=account.role,
        meaning=meaning,
        signed_at=signed_at or _now(),
        signed_via=credentials.via,
        authentication=how,
    )
