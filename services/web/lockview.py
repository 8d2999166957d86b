"""The lock on the page: the history (receipt, files, open queries at the lock, unlocks), the
confirmation of what a new lock will freeze, the verified download, and the locked report beside
the current one.

Everything is read through the :class:`VisiblePlatform`; the files of a lock hold every event
unblinded, so only a role that sees everything may take them away (``sees_everything``).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from typing import Any

import polars as pl

import schemas
from services.adjudicator.state import current
from services.errors import TractError
from services.lock.lock import LEVELS, LOCK_ID
from services.queries import fingerprint, not_closed
from services.signatures import manifestation_of
from services.web import evidence as ev
from services.web.visibility import VisiblePlatform


@dataclass(frozen=True)
class LockEntry:
    lock_id: str
    state: str
    """"in force", "unlocked" or "claimed" (its files are being written, or a run crashed)."""
    level: str
    requested_by: str
    at: str
    reason: str
    manifest_sha256: str | None
    location: str | None
    files: int | None = None
    rows: int | None = None
    open_queries: dict[str, Any] | None = None
    unlock: dict[str, Any] | None = None
    problem: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    signature: str | None = None
    """The requester's signature as 11.50 shows it (printed name, time, meaning), when the lock
    was signed (every lock taken at the terminal, on this page or by the DAG)."""


def lock_history(platform: VisiblePlatform, study: str) -> list[LockEntry]:
    """Every lock of ``study``, newest first, with what its manifest says (checked against its
    LOCK event: a damaged lock says so instead of a receipt)."""
    events = platform.records("lock", study).collect().sort("offset")
    entries = []
    for lock_id in events["lock_id"].unique(maintain_order=True).to_list():
        mine = events.filter(pl.col("lock_id") == lock_id)
        locked = mine.filter(pl.col("action") == "LOCK")
        unlocked = mine.filter(pl.col("action") == "UNLOCK")
        base = (locked if locked.height else mine).row(0, named=True)
        unlock = None
        if unlocked.height:
            u = unlocked.row(-1, named=True)
            unlock = {
                "by": u["requested_by"],
                "at": ev.text(u["at"]),
                "reason": u["reason"],
                "approvers": ", ".join(u["approvers"] or []),
            }
        state = "unlocked" if unlock else ("in force" if locked.height else "claimed")
        manifest: dict[str, Any] = {}
        problem = None
        if locked.height:
            try:
                manifest = platform.lock_manifest(study, lock_id)
            except TractError as exc:
                problem = str(exc)
        counts = manifest.get("row_counts") or {}
        entries.append(
            LockEntry(
                lock_id=lock_id,
                state=state,
                level=base["level"],
                requested_by=base["requested_by"],
                at=ev.text(base["at"]),
                reason=base["reason"],
                manifest_sha256=base["manifest_sha256"] if locked.height else None,
                location=base["location"],
                files=len(manifest["files"]) if "files" in manifest else None,
                rows=sum(counts.values()) if counts else None,
                open_queries=manifest.get("open_queries"),
                unlock=unlock,
                problem=problem,
                manifest=manifest,
                signature=manifestation_of(manifest["signature"])
                if manifest.get("signature")
                else None,
            )
        )
    return entries[::-1]


def lock_files(platform: Any, study: str, lock_id: str) -> tuple[bytes, int]:
    """A zip of the lock's files and manifest, every file checked against the manifest (and
    the manifest against its LOCK event) on the way; raises naming what does not match."""
    from services.lock.errors import SnapshotTamperedError
    from services.lock.snapshot import lock_prefix, manifest_bytes, read_manifest, sha256

    event = platform.lock_event(study, lock_id)
    if event is None:
        raise SnapshotTamperedError(f"lock {lock_id} of {study} was never published")
    manifest = read_manifest(platform.store, study, lock_id, event["manifest_sha256"])
    prefix = lock_prefix(study, lock_id)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, entry in sorted(manifest["files"].items()):
            data = platform.store.read(f"{prefix}/{name}")
            if sha256(data) != entry["sha256"]:
                raise SnapshotTamperedError(
                    f"{platform.store.location(f'{prefix}/{name}')} does not match its manifest "
                    "(sha256): the lock's files were altered; nothing was downloaded. Run "
                    "`tract verify`"
                )
            archive.writestr(f"{study}-{lock_id}/{name}", data)
        archive.writestr(
            f"{study}-{lock_id}/manifest.json", manifest_bytes(platform.store, study, lock_id)
        )
    return buffer.getvalue(), len(manifest["files"])


# -- the confirmation ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LockPreview:
    study: str
    lock_id: str
    reason: str
    level: str
    problems: dict[str, str]
    """Per field (lock_id, reason, level, study), what must change before a lock can be taken."""
    open_conflicts: list[dict[str, Any]]
    queries: list[dict[str, Any]]
    """Site queries not closed (a lock with them needs a recorded reason)."""
    queries_seen: str
    counts: list[tuple[str, int]]
    since_previous: dict[str, Any] | None
    rule_set: str
    previous_lock: str | None
    lock_in_force: dict[str, Any] | None

    @property
    def lockable(self) -> bool:
        return not self.problems and not self.open_conflicts


def lock_preview(
    platform: VisiblePlatform, study: str, lock_id: str, reason: str, level: str
) -> LockPreview:
    """What a lock of ``study`` would freeze now, and what stands in its way."""
    lock_id, reason = lock_id.strip(), reason.strip()
    problems: dict[str, str] = {}
    if not LOCK_ID.match(lock_id):
        problems["lock_id"] = (
            "Give the lock an id: letters, digits, '.', '_' or '-', up to 64 characters "
            "(e.g. PRIMARY)."
        )
    if not reason:
        problems["reason"] = "Say why the database is locked (e.g. primary analysis)."
    if level not in LEVELS:
        problems["level"] = "Choose soft or hard."
    events = platform.records("lock", study).collect().sort("offset")
    used = events.filter(pl.col("lock_id") == lock_id)
    if lock_id and used.height:
        first = used.row(0, named=True)
        problems["lock_id"] = (
            f"Lock id {lock_id} is already used (by {first['requested_by']} on "
            f"{ev.text(first['at'])}, reason “{first['reason']}”); a lock id is used once. "
            "Choose a new one."
        )
    published = events.filter(pl.col("action").is_in(["LOCK", "UNLOCK"]))
    in_force = None
    if published.height and published["action"][-1] == "LOCK":
        in_force = published.row(-1, named=True)
        problems["study"] = (
            f"{study} is locked ({in_force['lock_id']}, since {ev.text(in_force['at'])}); a new "
            "lock needs that lock undone first by an unlock with two approvers."
        )
    result = platform.adjudicate(study, tables=("tracts", "patients", "conflicts"))
    open_conflicts = (
        result.conflicts.filter(pl.col("status") == "OPEN")
        .sort("type", "subject_id", "tract_id")
        .select("conflict_id", "type", "subject_id", "tract_id", "detail")
        .to_dicts()
    )
    queries = platform.queries(study)
    pending = not_closed(queries)
    previous = events.filter(pl.col("action") == "LOCK")
    return LockPreview(
        study=study,
        lock_id=lock_id,
        reason=reason,
        level=level,
        problems=problems,
        open_conflicts=open_conflicts,
        queries=pending.to_dicts(),
        queries_seen=fingerprint(queries),
        counts=_counts(platform, study, result),
        since_previous=_since_previous(platform, study, result, previous),
        rule_set=f"{platform.rules.id} version {platform.rules.version}",
        previous_lock=previous["lock_id"][-1] if previous.height else None,
        lock_in_force=in_force,
    )


def _counts(platform: VisiblePlatform, study: str, result: Any) -> list[tuple[str, int]]:
    """What the lock will hold, in the data manager's words."""

    def live(kind: str) -> int:
        frame = platform.records(kind, study).collect()
        if frame.is_empty():
            return 0
        return current(frame.lazy(), schemas.contract(kind)).collect().height

    conflicts = result.conflicts
    return [
        ("subjects", live("subject")),
        ("registered tracts", result.tracts.height),
        ("treated tracts", result.tracts.filter(pl.col("treated")).height),
        ("injections", live("injection")),
        ("clinical exams (current versions)", live("clinical_exam")),
        ("MRI reads (current versions)", live("mri_read")),
        ("pathology reports (current versions)", live("pathology_report")),
        ("rejected rows (dead letters)", platform.records("rejected_row", study).collect().height),
        (
            "conflicts decided by the committee",
            conflicts.filter(pl.col("status") == "DECIDED").height,
        ),
        ("conflicts resolved by data", conflicts.filter(pl.col("status") == "RESOLVED").height),
    ]


def _since_previous(
    platform: VisiblePlatform, study: str, result: Any, previous: pl.DataFrame
) -> dict[str, Any] | None:
    """How the outcomes now differ from the study's last lock (its frozen outcomes), for a
    role that sees results; None for a first lock."""
    if previous.is_empty() or not platform.policy.sees_results:
        return None
    last = previous["lock_id"][-1]
    try:
        locked = platform.locked_tables(study, last)
    except TractError as exc:
        return {"lock_id": last, "problem": str(exc)}
    key = ["subject_id", "tract_id"]
    tracts = (
        result.tracts.filter(pl.col("treated"))
        .select(*key, "outcome")
        .join(
            locked["tract_outcomes"].select(*key, was="outcome"), on=key, how="full", coalesce=True
        )
    )
    patients = result.patients.select("subject_id", "category").join(
        locked["patient_outcomes"].select("subject_id", was="category"),
        on="subject_id",
        how="full",
        coalesce=True,
    )
    return {
        "lock_id": last,
        "tracts": tracts.filter(pl.col("was").ne_missing(pl.col("outcome"))).height,
        "patients": patients.filter(pl.col("was").ne_missing(pl.col("category"))).height,
        "post_lock_data": int(result.tracts["post_lock"].fill_null(False).sum()),
    }


# -- the locked report beside the current one -------------------------------------------------------
@dataclass(frozen=True)
class Compared:
    label: str
    locked: str
    current: str
    changed: bool


def compare_reports(locked: dict[str, Any], now: dict[str, Any]) -> list[Compared]:
    """The figures of two reports side by side (only those both hold: a role without results
    compares reader agreement and the committee's counts)."""

    def get(report: dict[str, Any], path: tuple[str, ...]) -> Any:
        value: Any = report
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    def fmt(value: Any) -> str:
        if value is None:
            return "—"
        if isinstance(value, float):
            return f"{value:.3f}" if value < 1 else f"{value:.1f}"
        return str(value)

    figures = [
        ("Completers", ("completers", "n")),
        ("Full closure", ("completers", "FULL_CLOSURE")),
        ("Improved", ("completers", "IMPROVED")),
        ("Resistant", ("completers", "RESISTANT")),
        ("Pending", ("completers", "PENDING")),
        ("Treated tracts", ("tracts", "treated")),
        ("Tracts closed", ("tracts", "closed")),
        ("Discharge improved", ("discharge_improved", "improved")),
        ("ITT full closure", ("itt", "FULL_CLOSURE")),
        ("Kappa R1 vs R2", ("readers", "kappa")),
        ("Adjudication rate", ("readers", "adjudication_rate")),
        ("Open conflicts", ("committee", "open_conflicts")),
        ("Tracts overridden by the committee", ("committee", "tracts_overridden")),
        ("Rule set version", ("rule_set_version",)),
    ]
    rows = []
    for label, path in figures:
        a, b = get(locked, path), get(now, path)
        if a is None and b is None:
            continue
        rows.append(Compared(label, fmt(a), fmt(b), fmt(a) != fmt(b)))
    return rows
