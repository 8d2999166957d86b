"""Database unlock by signed approvals: a data manager signs a request, two other people with
an approving role sign their approvals, and the lock in force is then undone.

    REQUEST  (unlock_request event)   signed by the requester (data_manager or admin)
    APPROVAL (unlock_request event)   signed by each approver (approver or admin), never the
                                      requester, each person once
    UNLOCK   (lock event)             published when MIN_APPROVERS distinct approvals are in,
                                      naming the request, the requester and the approvers

Nothing is deleted: the lock's files stay in the store as they were; the unlock is an event in
the log (so the audit trail shows it) and a record beside the lock in the store (so an analyst
with only the store sees it too, with every signature). People are compared by their
normalised user names (:mod:`services.usernames`), and signatures are made by the caller's
``sign`` (:func:`services.signatures.sign` against the user store): this package never sees a
password or the user store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from services.events import Event, digest, make_event
from services.lock.errors import LockRefusedError
from services.lock.lock import lock_event, lock_record, published_lock, verified_manifest
from services.lock.snapshot import file_entries
from services.signatures import Signature, manifestation_of
from services.state.records import lock_in_force
from services.store.errors import ObjectLockedError

if TYPE_CHECKING:
    from services.lock.sources import LockSources

MIN_APPROVERS = 2
RECORD = "unlock.json"
REQUEST, APPROVAL = "REQUEST", "APPROVAL"
PENDING, APPROVED, UNLOCKED, CLOSED = "PENDING", "APPROVED", "UNLOCKED", "CLOSED"
Signer = Callable[[str], Signature]
"""Signs a meaning as the person at the keyboard (their password checked), or refuses."""


def unlock_prefix(study: str, lock_id: str) -> str:
    return f"unlocks/{study}/{lock_id}"


@dataclass(frozen=True)
class UnlockRequest:
    """One request and where it stands: PENDING (approvals missing), APPROVED (complete, the
    unlock not yet published), UNLOCKED (done by this request) or CLOSED (the lock is no
    longer in force: another request unlocked it)."""

    request_id: str
    study: str
    lock_id: str
    reason: str
    requested_by: str
    requested: str
    """The request's signature manifestation."""
    approvers: tuple[str, ...]
    approvals: tuple[str, ...]
    """Each approval's signature manifestation, in order."""
    state: str

    @property
    def missing(self) -> int:
        return max(MIN_APPROVERS - len(self.approvers), 0)

    def summary(self) -> str:
        if self.state == PENDING:
            need = f"{len(self.approvers)} of {MIN_APPROVERS} approvals; waiting for {self.missing} more"
        else:
            need = {
                APPROVED: "approved; the unlock is not yet published (approve again or run the DAG)",
                UNLOCKED: "unlocked",
                CLOSED: "closed: the lock is no longer in force",
            }[self.state]
        return f"{self.request_id} ({self.study} {self.lock_id}): {need}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"missing": self.missing}


def _event(study: str, payload: dict[str, Any]) -> Event:
    return make_event(
        "unlock_request",
        study,
        "",
        payload,
        payload["request_id"],
        payload["action"],
        payload["signer"],
    )


def requests(sources: LockSources, study: str | None = None) -> list[UnlockRequest]:
    """Every unlock request (of ``study``), oldest first, with its approvals and state."""
    events = sources.records.records("unlock_request", study).sort("offset").collect()
    if events.is_empty():
        return []
    return summarise(events, sources.records.records("lock", study).sort("offset").collect())


def summarise(events: pl.DataFrame, locks: pl.DataFrame) -> list[UnlockRequest]:
    """The requests among ``unlock_request`` events, given the same studies' lock events (in
    log order): who signed what, and where each request stands."""
    found = []
    for asked in events.filter(pl.col("action") == REQUEST).iter_rows(named=True):
        rid = asked["request_id"]
        approvals = events.filter(
            (pl.col("request_id") == rid)
            & (pl.col("action") == APPROVAL)
            & (pl.col("signer") != asked["signer"])
        ).unique("signer", keep="first", maintain_order=True)
        mine = locks.filter(pl.col("study") == asked["study"])
        found.append(
            UnlockRequest(
                request_id=rid,
                study=asked["study"],
                lock_id=asked["lock_id"],
                reason=asked["reason"],
                requested_by=asked["signer"],
                requested=manifestation_of(asked),
                approvers=tuple(approvals["signer"]),
                approvals=tuple(manifestation_of(a) for a in approvals.iter_rows(named=True)),
                state=_state(mine, asked["lock_id"], rid, approvals.height),
            )
        )
    return found


def _state(locks: pl.DataFrame, lock_id: str, request_id: str, approved: int) -> str:
    undone = locks.filter((pl.col("action") == "UNLOCK") & (pl.col("request_id") == request_id))
    if undone.height:
        return UNLOCKED
    published = locks.filter(pl.col("action").is_in(["LOCK", "UNLOCK"]))
    in_force = published.height and published["action"][-1] == "LOCK"
    if not in_force or published["lock_id"][-1] != lock_id:
        return CLOSED
    return APPROVED if approved >= MIN_APPROVERS else PENDING


def find_request(sources: LockSources, request_id: str) -> UnlockRequest:
    for found in requests(sources):
        if found.request_id == request_id:
            return found
    raise LockRefusedError(
        f"no unlock request {request_id!r}; list them with `tract unlock list --study STUDY`"
    )


def request_unlock(
    sources: LockSources, study: str, lock_id: str, reason: str, sign: Signer
) -> UnlockRequest:
    """Sign and record a request to undo ``lock_id``, the lock in force of ``study``."""
    reason = reason.strip()
    if not reason:
        raise LockRefusedError("an unlock request needs a reason (--reason)")
    with sources.exclusive():
        in_force = lock_in_force(sources.records, study)
        if in_force is None or in_force["lock_id"] != lock_id:
            raise LockRefusedError(
                f"{study} has no lock {lock_id} in force"
                + (f" (its lock in force is {in_force['lock_id']})" if in_force else "")
                + "; only the lock in force can be unlocked"
            )
        published = published_lock(sources, study, lock_id)
        verified_manifest(
            sources, study, lock_id, published["manifest_sha256"] if published else None
        )
        signature = sign(f"requested the unlock of lock {lock_id} of study {study}: {reason}")
        request_id = "UR-" + digest(
            study, lock_id, signature.signer, reason, signature.signed_at, length=12
        )
        payload = {
            "request_id": request_id,
            "action": REQUEST,
            "lock_id": lock_id,
            "reason": reason,
        }
        sources.publish([_event(study, payload | signature.to_dict())])
    return find_request(sources, request_id)


def approve_unlock(
    sources: LockSources, request_id: str, sign: Signer, apply: bool = True
) -> tuple[UnlockRequest, dict[str, Any] | None]:
    """Sign an approval of ``request_id``; when the approvals are then complete the lock is
    undone (unless ``apply`` is False: then the ``database_unlock`` DAG, or
    :func:`apply_request`, does it). Returns the request and the unlock record (None while
    approvals are missing or the unlock is left to the DAG)."""
    with sources.exclusive():
        asked = find_request(sources, request_id)
        if asked.state == CLOSED:
            raise LockRefusedError(
                f"unlock request {request_id}: {asked.summary().split(': ', 1)[1]}"
            )
        if asked.state in (APPROVED, UNLOCKED):
            raise LockRefusedError(
                f"unlock request {request_id} already has its {MIN_APPROVERS} approvals "
                f"({', '.join(asked.approvers)}); nothing more to sign"
            )
        signature = sign(
            f"approved unlock request {request_id}: unlock lock {asked.lock_id} of study "
            f"{asked.study} ({asked.reason})"
        )
        if signature.signer == asked.requested_by:
            raise LockRefusedError(
                f"unlock request {request_id}: {signature.signer} requested it and cannot also "
                f"approve it; {MIN_APPROVERS} other people with an approving role must"
            )
        if signature.signer in asked.approvers:
            raise LockRefusedError(
                f"unlock request {request_id}: {signature.signer} has already approved it; "
                "each approval must come from a different person"
            )
        payload = {
            "request_id": request_id,
            "action": APPROVAL,
            "lock_id": asked.lock_id,
            "reason": asked.reason,
        }
        sources.publish([_event(asked.study, payload | signature.to_dict())])
    asked = find_request(sources, request_id)
    if asked.state != APPROVED or not apply:
        return asked, None
    record = apply_request(sources, request_id)
    return find_request(sources, request_id), record


def apply_request(sources: LockSources, request_id: str) -> dict[str, Any]:
    """Undo the lock of a request whose approvals are complete; again, the same record."""
    asked = find_request(sources, request_id)
    if asked.state == PENDING:
        raise LockRefusedError(
            f"unlock request {request_id} has {len(asked.approvers)} of {MIN_APPROVERS} "
            "approvals; nothing is unlocked until they are complete "
            f"(`tract unlock approve {request_id} --as NAME`)"
        )
    study, lock_id = asked.study, asked.lock_id
    record_key = f"{unlock_prefix(study, lock_id)}/{RECORD}"
    if asked.state == UNLOCKED:
        if sources.store.exists(record_key):
            return json.loads(sources.store.read(record_key)) | {"already_unlocked": True}
        raise LockRefusedError(f"lock {lock_id} of {study} was unlocked, but its record is missing")
    if asked.state == CLOSED:
        raise LockRefusedError(
            f"unlock request {request_id}: lock {lock_id} of {study} is no longer in force"
        )
    published = published_lock(sources, study, lock_id)
    verified_manifest(sources, study, lock_id, published["manifest_sha256"] if published else None)
    with sources.exclusive():
        payload = lock_record(
            sources,
            study,
            lock_id,
            "UNLOCK",
            requested_by=asked.requested_by,
            reason=asked.reason,
            at=_latest_signature(sources, asked),
            approvers=list(asked.approvers),
            request_id=request_id,
        )
        record = _record_in_store(
            sources,
            study,
            lock_id,
            payload | {"request": asked.requested, "approvals": list(asked.approvals)},
        )
        if find_request(sources, request_id).state != UNLOCKED:
            sources.publish([lock_event(study, payload)])
    return record


def _latest_signature(sources: LockSources, asked: UnlockRequest) -> str:
    """When the last approval was signed: the moment the unlock took effect."""
    events = sources.records.records("unlock_request", asked.study).collect()
    mine = events.filter(pl.col("request_id") == asked.request_id)
    return mine["signed_at"].max().strftime("%Y-%m-%dT%H:%M:%SZ")


def _record_in_store(
    sources: LockSources, study: str, lock_id: str, record: dict[str, Any]
) -> dict[str, Any]:
    """Write the unlock record once; a re-run after a crash reuses the one already written."""
    data = json.dumps(record, indent=2).encode()
    manifest = {"files": file_entries({RECORD: data})}
    try:
        sources.store.write_snapshot(
            unlock_prefix(study, lock_id), {RECORD: data}, json.dumps(manifest).encode()
        )
    except ObjectLockedError:
        return json.loads(sources.store.read(f"{unlock_prefix(study, lock_id)}/{RECORD}"))
    return record
