"""Database lock: refuse while conflicts are open, else freeze an immutable, hash-verified
snapshot of the study at a recorded cut of the event log.

A lock is a chain of steps, each safe to run again, so an orchestrator (the ``database_lock``
DAG) can run them as separate tasks and retry any one of them:

    check_request -> check_conflicts -> freeze_cut -> materialise -> (validate, GX)
        -> write_lock -> verify_lock -> publish_lock

Between steps only small values travel (the cut, a staging path); the Parquet files wait in a
staging folder. :func:`take_lock` composes the steps for the CLI and the web page.

What the log guarantees about locks:
- **One lock in force per study.** A new lock of a locked study is refused until the lock in
  force is undone by a signed unlock.
- **A lock id is used once.** ``check_request`` claims the id in the log (a CLAIM event with the
  request's id, derived from what was asked); only that same request may complete a lock that
  crashed half-way, and an id that was ever locked is never written again, whatever the store
  holds now.
- **Anchored.** The LOCK event records the manifest's sha256 and the chain head at the cut;
  every read of a lock through the platform checks the manifest against it.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from services.events import Event, digest, make_event, utc_now
from services.lock.errors import (
    LockBlockedError,
    LockError,
    LockRefusedError,
    LogAlteredError,
    SnapshotTamperedError,
)
from services.lock.snapshot import (
    Snapshot,
    current_snapshot,
    file_entries,
    lock_prefix,
    manifest_bytes,
    open_lock,
    parse_manifest,
    sha256,
    snapshot_files,
    verify_files,
)
from services.lock.sources import Anchor, LockSources
from services.lock.staging import read_staged, stage
from services.signatures import Signature, manifestation_expr, manifestation_of
from services.state.records import Cut, lock_in_force, records_at
from services.store import MANIFEST
from services.store.errors import ObjectLockedError, ObjectNotFoundError

LOCK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LEVELS = ("soft", "hard")
LOCK, UNLOCK, CLAIM, RAISE = "LOCK", "UNLOCK", "CLAIM", "RAISE"


def code_version() -> str:
    """The package version and, in a git checkout, the commit."""
    version = metadata.version("tract-adjudication")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{version}+g{commit}"
    except (OSError, subprocess.SubprocessError):
        return version


def blocked_message(open_conflicts: pl.DataFrame) -> str:
    counts = open_conflicts.group_by("type").len().sort("type")
    summary = ", ".join(f"{t} x{n}" for t, n in counts.iter_rows())
    lines = "\n".join(
        f"  {r['conflict_id']}  {r['type']}  {r['subject_id']}/{r['tract_id']}  {r['detail']}"
        for r in open_conflicts.iter_rows(named=True)
    )
    return (
        f"lock blocked: {open_conflicts.height} open conflict(s) ({summary}); "
        f"resolve them in the committee queue (`tract conflicts`, `tract vote`)\n{lines}"
    )


@dataclass(frozen=True)
class LockRequest:
    """What a data manager asks for; checked before anything is computed."""

    study: str
    lock_id: str
    reason: str
    requested_by: str
    level: str = "soft"
    request_id: str = field(default="")
    open_queries_reason: str = ""
    """Why the lock goes ahead while site queries are not closed (kept in the manifest's
    ``open_queries``); not part of the request's id."""

    def __post_init__(self) -> None:
        if not self.study.strip():
            raise LockRefusedError("a lock needs a study (--study)")
        if not LOCK_ID.match(self.lock_id):
            raise LockRefusedError(
                f"lock id {self.lock_id!r} must be letters, digits, '.', '_' or '-' (max 64)"
            )
        if not self.reason.strip() or not self.requested_by.strip():
            raise LockRefusedError("a lock needs a reason and who requested it (--reason, --as)")
        if self.level not in LEVELS:
            raise LockRefusedError(f"lock level must be soft or hard, got {self.level!r}")
        if not self.request_id:
            # The same request (study, id, level, reason, who) always gets the same id, so a
            # re-run of it may complete a lock it started, and no other request can.
            object.__setattr__(
                self,
                "request_id",
                "LR-"
                + digest(
                    self.study,
                    self.lock_id,
                    self.level,
                    self.reason.strip(),
                    self.requested_by.strip(),
                    length=16,
                ),
            )

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def lock_event(study: str, payload: dict[str, Any]) -> Event:
    return make_event("lock", study, "", payload, payload["lock_id"], payload["action"])


# what the log says about locks ------------------------------------------------------------------
def lock_history(sources: LockSources, study: str, lock_id: str) -> pl.DataFrame:
    events = sources.lock_events(study)
    return events.filter(pl.col("lock_id") == lock_id)


def lock_state(sources: LockSources, study: str, lock_id: str) -> str | None:
    """``LOCK`` or ``UNLOCK`` (the lock's latest published event), or None if never published
    (a claim is not a lock)."""
    published = lock_history(sources, study, lock_id).filter(pl.col("action").is_in([LOCK, UNLOCK]))
    return None if published.is_empty() else str(published["action"][-1])


def published_lock(sources: LockSources, study: str, lock_id: str) -> dict[str, Any] | None:
    """The LOCK event of ``lock_id``, if it was ever published."""
    locks = lock_history(sources, study, lock_id).filter(pl.col("action") == LOCK)
    return None if locks.is_empty() else locks.row(0, named=True)


def check_study(sources: LockSources, study: str) -> None:
    """Writing commands refuse a study that holds no subjects, naming those that do."""
    if sources.records.records("subject", study, columns=("offset",)).head(1).collect().height:
        return
    known = sources.records.studies()
    raise LockRefusedError(
        f"study {study!r} has no subjects in this home; it holds "
        + (", ".join(known) if known else "no study yet (ingest first)")
    )


# steps ----------------------------------------------------------------------------------------
def check_request(sources: LockSources, request: LockRequest) -> dict[str, Any] | None:
    """The existing lock's manifest when ``lock_id`` was already locked (an idempotent re-run,
    verified against its LOCK event), else None when this request may lock (the id is claimed
    when the files are written)."""
    check_study(sources, request.study)
    study, lock_id = request.study, request.lock_id
    history = lock_history(sources, study, lock_id)
    published = published_lock(sources, study, lock_id)
    if published is not None:
        if lock_state(sources, study, lock_id) == UNLOCK:
            raise LockRefusedError(
                f"lock {lock_id} of {study} was unlocked; its files stay as they were. "
                "Lock again under a new lock id"
            )
        manifest = verified_manifest(sources, study, lock_id, published["manifest_sha256"])
        raised = history.filter(pl.col("action") == RAISE).height > 0
        if request.level == "hard" and manifest.get("level") != "hard" and not raised:
            raise LockRefusedError(
                f"lock {lock_id} of {study} is a {manifest.get('level')} lock; it is not "
                f"changed by asking again with level {request.level}. Raising a soft lock to "
                f"hard is its own signed step (`tract lock-raise --study {study} --lock-id {lock_id} "
                "--reason ... --as NAME`)"
            )
        return manifest
    claims = history.filter(pl.col("action") == CLAIM)
    if claims.height:
        _same_request(claims.row(0, named=True), request.request_id, study, lock_id)
        return None  # resuming this request's own lock
    in_force = lock_in_force(sources.records, study)
    if in_force is not None:
        raise LockRefusedError(
            f"{study} is locked ({in_force['lock_id']}, {in_force['level']}, since "
            f"{in_force['at']:%Y-%m-%d %H:%M} UTC); a new lock needs the lock in force undone first "
            f"by a signed unlock (`tract unlock request --study {study} --lock-id {in_force['lock_id']}`)"
        )
    if sources.store.exists(f"{lock_prefix(study, lock_id)}/{MANIFEST}"):
        raise SnapshotTamperedError(
            f"the store holds a lock {lock_id} of {study} that the log never claimed or "
            "published: it was not written by tract (or the log was replaced); it is never "
            "trusted or reused. Run `tract verify` and lock under a new id"
        )
    return None


def _same_request(claim: dict[str, Any], request_id: str, study: str, lock_id: str) -> None:
    if claim["request_id"] != request_id:
        raise LockRefusedError(
            f"lock id {lock_id} of {study} was claimed by another request ({claim['requested_by']} "
            f"at {claim['at']:%Y-%m-%d %H:%M} UTC, {claim['level']}, reason {claim['reason']!r}); "
            "only that request can complete it. Use a new lock id"
        )


def claim(sources: LockSources, request: LockRequest) -> None:
    """Claim the lock id for ``request`` just before its cut is frozen: an id is claimed once,
    and only its own request may complete the lock (a re-run of it after a crash may)."""
    study, lock_id = request.study, request.lock_id
    with sources.exclusive():
        if published_lock(sources, study, lock_id) is not None:
            return
        claims = lock_history(sources, study, lock_id).filter(pl.col("action") == CLAIM)
        if claims.height:
            _same_request(claims.row(0, named=True), request.request_id, study, lock_id)
            return
        in_force = lock_in_force(sources.records, study)
        if in_force is not None:
            raise LockRefusedError(
                f"{study} was locked meanwhile ({in_force['lock_id']}); this lock is not taken"
            )
        event = {
            "lock_id": lock_id,
            "action": CLAIM,
            "level": request.level,
            "requested_by": request.requested_by,
            "reason": request.reason,
            "at": utc_now(),
            "positions": "{}",
            "manifest_sha256": None,
            "approvers": None,
            "location": sources.store.location(lock_prefix(study, lock_id)),
            "request_id": request.request_id,
            "chain_seq": None,
            "chain_hash": None,
        }
        sources.publish([lock_event(study, event)])


def owns_claim(sources: LockSources, study: str, lock_id: str, request_id: str) -> None:
    """Refuse to write a lock whose id another request claimed (or nobody did)."""
    claims = lock_history(sources, study, lock_id).filter(pl.col("action") == CLAIM)
    if claims.is_empty():
        raise LockRefusedError(
            f"lock id {lock_id} of {study} was never claimed (freeze_cut claims it); run the "
            "whole lock again"
        )
    _same_request(claims.row(0, named=True), request_id, study, lock_id)


def verified_manifest(
    sources: LockSources, study: str, lock_id: str, expected_sha256: str | None
) -> dict[str, Any]:
    """The stored manifest of a published lock, which must be the one its LOCK event names."""
    try:
        data = manifest_bytes(sources.store, study, lock_id)
    except LockError:
        raise SnapshotTamperedError(
            f"lock {lock_id} of {study} was published (its LOCK event is in the log) but its "
            f"manifest is missing from {sources.store.location(lock_prefix(study, lock_id))}: "
            "the lock is damaged and its id is never reused. Restore the manifest from the "
            "store's retained version; run `tract verify`"
        ) from None
    if expected_sha256 and sha256(data) != expected_sha256:
        raise SnapshotTamperedError(
            f"the manifest of lock {lock_id} of {study} is not the one its LOCK event names "
            f"(sha256 {sha256(data)[:16]}…, the log says {expected_sha256[:16]}…): the lock was "
            "rewritten; do not use it. Restore it from the store's retained version"
        )
    return parse_manifest(data, sources.store.location(f"{lock_prefix(study, lock_id)}/{MANIFEST}"))


def check_conflicts(conflicts: pl.DataFrame) -> dict[str, int]:
    """Raise :class:`LockBlockedError` listing every open conflict; else the counts by status."""
    open_conflicts = conflicts.filter(pl.col("status") == "OPEN")
    if open_conflicts.height:
        raise LockBlockedError(blocked_message(open_conflicts))
    return dict(conflicts.group_by("status").len().sort("status").iter_rows())


def check_ready(sources: LockSources, request: LockRequest) -> dict[str, Any]:
    """Before the lock id is claimed: refused while a conflict is open, or while site queries
    are not closed and the request gives no reason; else the conflicts' counts by status and
    the open queries (both are checked again at the cut, in :func:`materialise`)."""
    conflicts = sources.conflicts(request.study, None)
    counts = check_conflicts(conflicts)
    return {"conflicts": counts, "open_queries": open_queries(sources, request, None, conflicts)}


def freeze_cut(sources: LockSources, request: LockRequest | None = None) -> dict[str, Any]:
    """The log positions the lock covers (every event before them, none after) and the chain
    head there, its anchor. With ``request``, its lock id is claimed first (the claim is
    inside the cut: nothing but the LOCK event follows it)."""
    check_intact(sources)
    if request is not None:
        claim(sources, request)
    cut, anchor = sources.freeze()
    return {"positions": cut, "chain": anchor}


def check_intact(sources: LockSources) -> None:
    """Refuse to lock a log whose segments or chain no longer match what was written (a
    segment edited in the home, say): a lock certifies the data it freezes."""
    findings = sources.integrity()
    if findings:
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        raise LogAlteredError(
            f"the event log does not verify, so nothing is locked: {findings[0]}{more}. Run "
            "`tract verify`, find who changed the log and restore it from a backup; lock then"
        )


def changes_since(sources: LockSources, study: str, snapshot: Snapshot) -> dict[str, Any] | None:
    """How the outcomes differ from the study's previous lock (the last one written), for the
    manifest: ``{"lock_id", "tracts", "patients"}``; None for a first lock."""
    previous = sources.lock_events(study).filter(pl.col("action") == LOCK)
    if previous.is_empty():
        return None
    last = previous.row(-1, named=True)
    try:
        old = open_lock(sources.store, study, last["lock_id"], last["manifest_sha256"])
    except (LockError, ObjectNotFoundError) as exc:
        return {"lock_id": last["lock_id"], "tracts": None, "patients": None, "problem": str(exc)}
    key = ["subject_id", "tract_id"]
    tracts = (
        snapshot.tables["tract_outcomes"]
        .select(*key, "outcome")
        .join(
            old.tables["tract_outcomes"].select(*key, was="outcome"),
            on=key,
            how="full",
            coalesce=True,
        )
    )
    patients = (
        snapshot.tables["patient_outcomes"]
        .select("subject_id", "category")
        .join(
            old.tables["patient_outcomes"].select("subject_id", was="category"),
            on="subject_id",
            how="full",
            coalesce=True,
        )
    )
    return {
        "lock_id": last["lock_id"],
        "tracts": tracts.filter(pl.col("was").ne_missing(pl.col("outcome"))).height,
        "patients": patients.filter(pl.col("was").ne_missing(pl.col("category"))).height,
    }


def open_queries(
    sources: LockSources, request: LockRequest, cut: Cut | None = None, conflicts: Any = None
) -> dict[str, Any]:
    """The site queries not closed (count, per site, ids) at ``cut`` (now without one) and
    the reason the data manager gave for locking with them (``services/queries.py``).

    Refused with :class:`LockBlockedError` when some are not closed and no reason is given:
    a lock never freezes data the sites were still asked about without saying why."""
    from services.queries import site_queries, summary

    def read(kind: str, subjects: Any = None) -> pl.DataFrame:
        return records_at(sources.records, kind, request.study, cut, subjects).collect()

    if conflicts is None:
        conflicts = sources.conflicts(request.study, cut)
    pending = summary(site_queries(read, conflicts), request.open_queries_reason)
    if pending["not_closed"] and not pending["reason"]:
        raise LockBlockedError(queries_message(request.study, pending))
    return pending


def queries_message(study: str, pending: dict[str, Any]) -> str:
    """Why a lock with site queries not closed and no reason is refused, and what to do."""
    count = pending["not_closed"]
    sites = ", ".join(f"{site}: {n}" for site, n in pending["by_site"].items())
    return (
        f"lock blocked: {count} site quer{'y is' if count == 1 else 'ies are'} not closed "
        f"({sites}); close them (`tract queries list --study {study}`) or give the reason "
        "for locking with them (--open-queries-reason; the database_lock DAG's param "
        "open_queries_reason): it is recorded in the lock"
    )


def materialise(
    sources: LockSources,
    request: LockRequest,
    cut: dict[str, Any],
    staging: Path,
    retention_days: int | None = None,
    signature: dict[str, str] | None = None,
) -> Path:
    """Compute the study at the cut and stage its files and manifest in ``staging``; a
    ``signature`` (:func:`signed`) is kept in the manifest beside ``requested_by``.

    Conflicts and site queries are checked again at the cut: data that arrived after
    :func:`check_ready` may have raised new ones. Staging replaces any earlier attempt in one
    rename.
    """
    positions: Cut = {k: int(v) for k, v in cut["positions"].items()}
    snapshot = current_snapshot(sources, request.study, positions)
    check_intact(sources)  # the log these tables were computed from still matches its chain
    check_conflicts(snapshot.tables["conflicts"])
    locked_at = utc_now()
    report = snapshot.report(sources.rules.confidence_level) | {
        "lock_id": request.lock_id,
        "locked_at": locked_at,
    }
    files = snapshot_files(snapshot, report, sources.rules)
    retain_until = None
    if request.level == "hard":
        days = _retention_days() if retention_days is None else retention_days
        retain_until = (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)
    manifest = {
        "lock_id": request.lock_id,
        "study": request.study,
        "request_id": request.request_id,
        "locked_at": locked_at,
        "requested_by": request.requested_by,
        **({"signature": signature} if signature else {}),
        "reason": request.reason,
        "level": request.level,
        "retain_until": retain_until.isoformat().replace("+00:00", "Z") if retain_until else None,
        "positions": positions,
        "chain": cut.get("chain") or {},
        "changes_since_previous_lock": changes_since(sources, request.study, snapshot),
        "open_queries": open_queries(sources, request, positions, snapshot.tables["conflicts"]),
        "rule_set": {
            "id": sources.rules.id,
            "version": sources.rules.version,
            "sha256": sources.rules.sha256,
        },
        "code_version": code_version(),
        "validation": {
            "gate": "not run",
            "why": "locked without the Great Expectations gate (`tract lock` without --validate); "
            "the database_lock DAG runs it",
        },
        "row_counts": {
            name: _rows(name, data) for name, data in files.items() if name.endswith(".parquet")
        },
        "files": file_entries(files),
    }
    return stage(staging, files, json.dumps(manifest, indent=2).encode())


def write_lock(sources: LockSources, study: str, lock_id: str, staging: Path) -> str:
    """Put the staged lock into the store (retained when hard), manifest last; its location.

    Safe to retry: a write that already completed is recognised by its manifest's hash.
    """
    files, manifest_bytes_ = read_staged(staging)
    manifest = json.loads(manifest_bytes_)
    owns_claim(sources, study, lock_id, manifest["request_id"])
    until = manifest.get("retain_until")
    retain_until = datetime.fromisoformat(until.replace("Z", "+00:00")) if until else None
    prefix = lock_prefix(study, lock_id)
    try:
        sources.store.write_snapshot(prefix, files, manifest_bytes_, retain_until)
    except ObjectLockedError:
        key = f"{prefix}/{MANIFEST}"
        if not sources.store.exists(key) or sources.store.read(key) != manifest_bytes_:
            raise
    return sources.store.location(prefix)


def verify_lock(sources: LockSources, study: str, lock_id: str, staging: Path | None = None) -> str:
    """Read every file of the lock back and compare with the manifest (raises on mismatch);
    with ``staging``, also check the stored manifest is the one this run staged. Returns the
    manifest's sha256 (the lock's receipt)."""
    published = published_lock(sources, study, lock_id)
    expected = published["manifest_sha256"] if published else None
    stored = verify_files(sources.store, study, lock_id, expected)
    staged = Path(staging) / MANIFEST if staging is not None else None
    if staged is not None and staged.is_file() and staged.read_bytes() != stored:
        raise LockRefusedError(
            f"the stored manifest of {study}/{lock_id} is not the one this run staged: another "
            "run wrote the same lock id at the same time. Its lock stands; this run changed nothing"
        )
    return sha256(stored)


def lock_record(
    sources: LockSources, study: str, lock_id: str, action: str, **changes: Any
) -> dict[str, Any]:
    """The payload of a lock event about ``lock_id``, from its stored manifest (read once):
    as the lock was requested, with ``changes`` (an unlock's who, why, when and approvers)."""
    prefix = lock_prefix(study, lock_id)
    data = sources.store.read(f"{prefix}/{MANIFEST}")
    manifest = parse_manifest(data, sources.store.location(f"{prefix}/{MANIFEST}"))
    chain: Anchor = manifest.get("chain") or {}
    return {
        "lock_id": lock_id,
        "action": action,
        "level": manifest["level"],
        "requested_by": manifest["requested_by"],
        "reason": manifest["reason"],
        "at": manifest["locked_at"],
        "positions": json.dumps(manifest["positions"], sort_keys=True),
        "manifest_sha256": sha256(data),
        "approvers": None,
        "location": sources.store.location(prefix),
        "request_id": manifest.get("request_id"),
        "chain_seq": chain.get("seq"),
        "chain_hash": chain.get("hash"),
    } | changes


def publish_lock(sources: LockSources, study: str, lock_id: str) -> dict[str, Any]:
    """Publish the lock event from the stored manifest; publishing again adds nothing."""
    published = published_lock(sources, study, lock_id)
    if published is not None:
        verified_manifest(sources, study, lock_id, published["manifest_sha256"])
        return lock_record(sources, study, lock_id, LOCK)
    payload = lock_record(sources, study, lock_id, LOCK)
    claims = lock_history(sources, study, lock_id).filter(pl.col("action") == CLAIM)
    if claims.height and claims["request_id"][0] != payload["request_id"]:
        raise LockRefusedError(
            f"the stored lock {study}/{lock_id} was written by request {payload['request_id']}, "
            f"but the id was claimed by {claims['request_id'][0]}; it is not published"
        )
    sources.publish([lock_event(study, payload)])
    return payload


# the whole lock, for the CLI and the web page ---------------------------------------------------
def lock_meaning(request: LockRequest) -> str:
    """What the person locking signs (21 CFR 11.50's meaning)."""
    return (
        f"locked {request.study} {request.lock_id} ({request.level} lock): {request.reason.strip()}"
    )


def signed(request: LockRequest, sign: Callable[[str], Signature]) -> dict[str, str]:
    """The requester's signature of the lock (``sign(meaning)`` checks their password and
    role, or raises ``SignatureRefusedError``): a lock is signed by the person it names."""
    signature = sign(lock_meaning(request))
    if signature.signer != request.requested_by:
        raise LockRefusedError(
            f"lock {request.lock_id} of {request.study} is requested by "
            f"{request.requested_by} but signed by {signature.signer}; the person locking signs"
        )
    return signature.to_dict()


def sign_lock_request(
    sources: LockSources, request: LockRequest, sign: Callable[[str], Signature]
) -> dict[str, Any]:
    """Sign ``request`` now for the database_lock DAG to take later (Airflow never sees a
    password): the study and the lock id are checked, then the requester signs and the
    request is published as a ``lock_request`` event. Conflicts and site queries are checked
    when the DAG runs: what counts is the study then."""
    if check_request(sources, request) is not None:
        raise LockRefusedError(
            f"lock {request.lock_id} of {request.study} already exists: nothing to sign"
        )
    signature = signed(request, sign)
    payload = {
        "request_id": request.request_id,
        "lock_id": request.lock_id,
        "level": request.level,
        "reason": request.reason,
        "open_queries_reason": request.open_queries_reason,
        **signature,
    }
    event = make_event(
        "lock_request", request.study, "", payload, request.request_id, signature["signed_at"]
    )
    sources.publish([event])
    return payload


def signed_lock_request(
    sources: LockSources, study: str, request_id: str
) -> tuple[LockRequest, dict[str, str]]:
    """The lock request ``request_id`` of ``study`` and its latest signature, as signed with
    :func:`sign_lock_request`; refused when there is none."""
    found = (
        sources.records.records("lock_request", study)
        .filter(pl.col("request_id") == request_id)
        .sort("offset")
        .collect()
    )
    if found.is_empty():
        raise LockRefusedError(
            f"no signed lock request {request_id!r} in study {study}: sign one first "
            f"(`tract lock --study {study} --lock-id ID --reason ... --as YOU --for-airflow`), "
            "then trigger database_lock with the request id it prints"
        )
    row = found.row(-1, named=True)
    request = LockRequest(
        study,
        row["lock_id"],
        row["reason"],
        row["signer"],
        row["level"],
        open_queries_reason=row["open_queries_reason"] or "",
    )
    signature = {name: row[name] for name in Signature.__dataclass_fields__}
    signature["signed_at"] = row["signed_at"].strftime("%Y-%m-%dT%H:%M:%SZ")
    return request, signature


REQUEST_HOURS = 24
REQUEST_VALID_FOR = timedelta(hours=REQUEST_HOURS)
"""How long a lock signed for the DAG waits to be taken. The signature consents to locking the
study as it stands when it is signed, not whenever a run comes: an older request is refused
(signed again, its newest signature counts). A run that claimed its lock id in time may still
finish later: the cut it froze is the one signed for."""

WAITING, TAKEN, OTHER = (
    "waiting for database_lock",
    "taken",
    "not taken: another request took its lock id",
)
EXPIRED = f"expired: not taken within {REQUEST_HOURS} hours"


def take_by(signed_at: str | datetime) -> datetime:
    """When a lock signed for the DAG at ``signed_at`` (a signature's time: ISO text in UTC, or
    as a record's column reads it) is no longer taken."""
    moment = datetime.fromisoformat(signed_at) if isinstance(signed_at, str) else signed_at
    return moment + REQUEST_VALID_FOR


def check_in_time(
    sources: LockSources,
    request: LockRequest,
    signed_at: str,
    now: datetime | None = None,
) -> None:
    """Refuse a signed request past :data:`REQUEST_VALID_FOR` whose run never claimed its lock
    id (a claim made in time may be finished: see :func:`claim`)."""
    history = lock_history(sources, request.study, request.lock_id)
    started = history.filter(pl.col("request_id") == request.request_id).height > 0
    deadline = take_by(signed_at)
    if started or (now or datetime.now(UTC)) <= deadline:
        return
    raise LockRefusedError(
        f"lock request {request.request_id} was signed at {signed_at} and not taken by "
        f"{deadline:%Y-%m-%d %H:%M} UTC: a signed lock is taken within {REQUEST_HOURS} "
        f"hours, while the study is as it was signed for. Sign it again (`tract lock --study "
        f"{request.study} --lock-id {request.lock_id} ... --for-airflow`: a new signature "
        "renews it), then trigger database_lock with the request id it prints"
    )


def lock_requests(
    requests: pl.DataFrame, locks: pl.DataFrame, now: datetime | None = None
) -> list[dict[str, str]]:
    """Every lock signed for the DAG (``lock_request`` events), newest first, its latest
    signature shown with its signer and when it must be taken by, and where it stands against
    the study's ``lock`` events (log order):
    taken (the DAG published its lock), waiting, not taken (its lock id went to another
    request: the first to claim an id owns it) or expired (unclaimed past
    :data:`REQUEST_VALID_FOR`)."""
    claims = locks.filter(pl.col("action").is_in([CLAIM, LOCK]))
    taken = claims.filter(pl.col("action") == LOCK)["request_id"].drop_nulls().implode()
    owners = claims.unique("lock_id", keep="first").select("lock_id", owner="request_id")
    request = pl.col("request_id")
    cutoff = (now or datetime.now(UTC)) - REQUEST_VALID_FOR
    return (
        requests.sort("offset")
        .unique("request_id", keep="last", maintain_order=True)
        .reverse()
        .join(owners, on="lock_id", how="left", maintain_order="left")
        .select(
            "request_id",
            "lock_id",
            "level",
            "reason",
            "signer",
            signature=manifestation_expr(),
            take_by=(pl.col("signed_at") + REQUEST_VALID_FOR).dt.strftime("%Y-%m-%d %H:%M UTC"),
            state=pl.when(request.is_in(taken))
            .then(pl.lit(TAKEN))
            .when(pl.col("owner").is_not_null() & (pl.col("owner") != request))
            .then(pl.lit(OTHER))
            .when(pl.col("owner").is_null() & (pl.col("signed_at") < cutoff))
            .then(pl.lit(EXPIRED))
            .otherwise(pl.lit(WAITING)),
        )
        .to_dicts()
    )


def take_lock(
    sources: LockSources,
    request: LockRequest,
    retention_days: int | None = None,
    *,
    validate: bool = False,
    sign: Callable[[str], Signature] | None = None,
) -> dict[str, Any]:
    """Lock as ``request`` asks; the same request again returns the existing lock.

    ``validate`` runs the Great Expectations gate (``infra/gx``) as the DAG does; it needs the
    ``airflow`` extra, so the CLI leaves it off by default.

    ``sign`` (the CLI's: the person at the keyboard, their password asked for) is called once
    the request, the conflicts and the site queries have been checked, before the lock id is
    claimed: a lock the state refuses asks for no password, a refused signature claims and
    writes nothing. The signature goes into the manifest. An existing lock is returned
    unsigned: nothing is written.
    """
    if validate:  # GX's import (4-5 s) overlaps with computing the snapshot
        from services.lock.gate import preload

        preload()
    existing = check_request(sources, request)
    if existing is not None:
        verify_lock(sources, request.study, request.lock_id)
        return existing | {"already_locked": True}
    check_ready(sources, request)
    signature = signed(request, sign) if sign is not None else None
    cut = freeze_cut(sources, request)
    with tempfile.TemporaryDirectory(prefix="tract-lock-") as tmp:
        staging = materialise(
            sources, request, cut, Path(tmp) / request.lock_id, retention_days, signature
        )
        if validate:
            from services.lock.validation import validate_staged

            validate_staged(staging)
        write_lock(sources, request.study, request.lock_id, staging)
        verify_lock(sources, request.study, request.lock_id, staging)
        manifest = json.loads((staging / MANIFEST).read_bytes())
    publish_lock(sources, request.study, request.lock_id)
    return manifest


def _retention_days() -> int:
    from services.config import Settings

    return Settings.from_env().hard_lock_retention_days


def _rows(name: str, data: bytes) -> int:
    """A Parquet file's row count, from its footer."""
    import io

    import pyarrow.parquet as pq

    return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows


# raising a soft lock to hard --------------------------------------------------------------------
def raised_prefix(study: str, lock_id: str) -> str:
    """Where a soft lock's hard (retained) copy is written: the soft lock's own files are
    never rewritten, so its receipt stays what it was."""
    return f"raised/{study}/{lock_id}"


def raise_lock(
    sources: LockSources,
    study: str,
    lock_id: str,
    reason: str,
    sign: Callable[[str], Any],
    retention_days: int | None = None,
) -> dict[str, Any]:
    """Raise the soft lock in force to hard, as a signed step: its files, verified against
    the soft manifest, are written again under :func:`raised_prefix` with retention (the
    store refuses to change or delete them), and a RAISE event names the copy's manifest. The
    same step again returns the RAISE it made.

    ``sign(meaning)`` signs as the person raising it (a data manager or admin; their password
    is checked by the caller's signing service) and returns a
    :class:`services.signatures.Signature`.
    """
    reason = reason.strip()
    if not reason:
        raise LockRefusedError("raising a lock needs a reason (--reason)")
    published = published_lock(sources, study, lock_id)
    if published is None:
        raise LockRefusedError(f"{study} has no published lock {lock_id}; nothing to raise")
    done = lock_history(sources, study, lock_id).filter(pl.col("action") == RAISE)
    if done.height:
        return done.row(-1, named=True) | {"already_raised": True}
    in_force = lock_in_force(sources.records, study)
    if in_force is None or in_force["lock_id"] != lock_id:
        raise LockRefusedError(
            f"lock {lock_id} of {study} is not the lock in force; only the lock in force is raised"
        )
    manifest = verified_manifest(sources, study, lock_id, published["manifest_sha256"])
    if manifest.get("level") == "hard":
        raise LockRefusedError(f"lock {lock_id} of {study} is already a hard lock")
    signature = sign(f"raised lock {lock_id} of study {study} from soft to hard: {reason}")
    files = _verified_files(sources, lock_prefix(study, lock_id), manifest)
    days = _retention_days() if retention_days is None else retention_days
    until = (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)
    hard = manifest | {
        "level": "hard",
        "retain_until": until.isoformat().replace("+00:00", "Z"),
        "raised_from": {
            "manifest_sha256": published["manifest_sha256"],
            "location": sources.store.location(lock_prefix(study, lock_id)),
        },
        "raised": signature.to_dict() | {"reason": reason},
    }
    prefix = raised_prefix(study, lock_id)
    data = json.dumps(hard, indent=2).encode()
    try:
        sources.store.write_snapshot(prefix, files, data, until)
    except ObjectLockedError:  # a crash after the copy, before its event: reuse that copy
        data = sources.store.read(f"{prefix}/{MANIFEST}")
        if (
            json.loads(data).get("raised_from", {}).get("manifest_sha256")
            != published["manifest_sha256"]
        ):
            raise
    copy = parse_manifest(data, sources.store.location(f"{prefix}/{MANIFEST}"))
    _verified_files(sources, prefix, copy)
    who = copy["raised"]
    payload = lock_record(sources, study, lock_id, RAISE) | {
        "level": "hard",
        "requested_by": who["signer"],
        "reason": who["reason"],
        "at": who["signed_at"],
        "manifest_sha256": sha256(data),
        "location": sources.store.location(prefix),
        "request_id": "RR-" + digest(study, lock_id, who["signer"], who["signed_at"], length=12),
    }
    with sources.exclusive():
        if lock_history(sources, study, lock_id).filter(pl.col("action") == RAISE).is_empty():
            sources.publish([lock_event(study, payload)])
    return payload | {"signature": manifestation_of(who)}


def _verified_files(
    sources: LockSources, prefix: str, manifest: dict[str, Any]
) -> dict[str, bytes]:
    """Every file a manifest lists, read and checked against its sha256."""
    files = {}
    for name, expected in manifest["files"].items():
        data = sources.store.read(f"{prefix}/{name}")
        if sha256(data) != expected["sha256"]:
            raise SnapshotTamperedError(
                f"{sources.store.location(f'{prefix}/{name}')} does not match its manifest; "
                "the lock is not raised. Run `tract verify`"
            )
        files[name] = data
    return files
