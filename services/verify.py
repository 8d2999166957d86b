"""``tract verify``: what an auditor runs on a copy of a trial home to learn whether anything
was altered, and if so exactly what.

It walks the embedded log's hash chain and every segment's bytes (on Kafka: the adjudicator
service's applied log, chained the same way), then every lock the log published: the stored
manifest must be the one its LOCK event names, every file must match the manifest, and the
chain head the lock recorded at its cut must still be on the chain (so a log rewritten after
an edit is caught by any lock taken after the edited event). The maintained state's files
(what the page, `tract outcomes` and `report` read) are derived, so no chain covers them: each
study is computed afresh from the log and compared with them, table by table. A head an
auditor noted earlier (``--expect-head SEQ:HASH``) anchors the rest. Nothing here raises on
what it finds: every finding is reported, and the verdict says INTACT only when there is none.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from services.lock.catalog import check_snapshot
from services.lock.snapshot import lock_prefix
from services.log.segment import segment_schema
from services.log.verify import Finding, LogVerdict, verify_log
from services.store import MANIFEST, ObjectStore

if TYPE_CHECKING:
    from services.accounts import AccountStore
    from services.state.maintained import MaintainedState

MATCHES = "matches the log"


@dataclass
class LockCheck:
    study: str
    lock_id: str
    action: str
    integrity: str
    receipt: str | None
    anchored_at: int | None
    problem: str | None = None


@dataclass
class Verdict:
    home: str
    log: LogVerdict
    locks: list[LockCheck] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)
    """Per study, what the check of the maintained state's files found (or why it was not run)."""
    accounts: str | None = None
    """What the check of the user store against the log's account records found."""

    @property
    def intact(self) -> bool:
        return self.log.intact and not self.findings

    def first(self) -> Finding | None:
        found = [*self.log.findings, *self.findings]
        return found[0] if found else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": self.home,
            "verdict": "INTACT" if self.intact else "ALTERED",
            "log": self.log.to_dict(),
            "locks": [asdict(c) for c in self.locks],
            "state": self.states,
            "accounts": self.accounts,
            "findings": [str(f) for f in [*self.log.findings, *self.findings]],
            "first_finding": str(self.first()) if self.first() else None,
        }

    def text(self) -> str:
        log = self.log
        lines = [f"tract verify: {self.home}"]
        if log.head_hash:
            lines.append(
                f"log: {log.segments} segments, {log.events} events, head {log.head_seq}:{log.head_hash}"
            )
        lines += [f"  note: {n}" for n in log.notes]
        for c in self.locks:
            anchor = f", anchored at segment {c.anchored_at}" if c.anchored_at else ""
            state = c.integrity if not c.problem else f"{c.integrity}: {c.problem}"
            lines.append(f"lock {c.study}/{c.lock_id} ({c.action}): {state}{anchor}")
        lines += [f"state {study}: {said}" for study, said in self.states.items()]
        lines += [f"accounts: {self.accounts}"] if self.accounts else []
        if self.intact:
            compared = self.states and set(self.states.values()) == {MATCHES}
            outcomes = ", and the outcomes' files match the log" if compared else ""
            lines.append(
                f"verdict: INTACT (every chain link, segment, manifest and file matches{outcomes})"
            )
        else:
            lines.append(f"verdict: ALTERED; first: {self.first()}")
            lines += [f"  - {f}" for f in [*log.findings, *self.findings]]
        return "\n".join(lines)


def verified_home(settings: Any) -> Path:
    """The folder whose ``log/`` holds the chain: the home, or on Kafka the adjudicator
    service's applied state (every event it applied, chained the same way)."""
    if str(settings.bus).startswith("kafka://"):
        return Path(settings.home) / "adjudicator"
    return Path(settings.home)


def verify_platform_home(
    settings: Any, platform: Any, study: str | None = None, expect_head: str | None = None
) -> Verdict:
    """:func:`verify_home` as `tract verify` and the platform_verify DAG run it: the log the
    settings name, the platform's store and maintained state, and the home's user store."""
    from services.users import UserStore, users_file

    users = UserStore.for_home(settings.home) if users_file(settings.home).exists() else None
    home = verified_home(settings)
    return verify_home(home, platform.store, study, expect_head, platform.state, users)


def verify_home(
    home: Path,
    store: ObjectStore,
    study: str | None = None,
    expect_head: str | None = None,
    state: MaintainedState | None = None,
    users: AccountStore | None = None,
) -> Verdict:
    """Check the log under ``home``, the locks it published in ``store`` and, given the
    platform's ``state``, its files against the log, and ``users`` against the log's record of
    each account."""
    log = verify_log(Path(home) / "log")
    verdict = Verdict(str(home), log)
    if expect_head:
        _check_expected_head(verdict, expect_head)
    events = _lock_events(log)
    if study:
        events = events.filter(pl.col("study") == study)
    published = events.filter(pl.col("action") == "LOCK")
    unlocked = set(
        events.filter(pl.col("action") == "UNLOCK").select("study", "lock_id").iter_rows()
    )
    for row in published.iter_rows(named=True):
        verdict.locks.append(_check_lock(store, row, log, unlocked))
    for c in verdict.locks:
        if c.problem:
            verdict.findings.append(Finding(f"lock {c.study}/{c.lock_id}", c.problem))
    _unknown_locks(store, published, study, verdict)
    if state is not None and log.intact:  # an altered log is the finding; outcomes follow it
        _check_state(verdict, state, store, study)
        if users is not None:
            _check_accounts(verdict, users, state.log)
    return verdict


def _check_accounts(verdict: Verdict, users: AccountStore, source: Any) -> None:
    """Each account in the user store against the log's latest record of it."""
    from services.accounts import account_differences

    differences = account_differences(users, source)
    where = str(getattr(users, "path", "the user store"))
    verdict.findings += [Finding(where, problem) for problem in differences]
    count = len(users.accounts())
    verdict.accounts = (
        f"{count} in the user store, each as the log records it"
        if not differences
        else f"{len(differences)} of {count} differ from the log's record (signing refused)"
    )


def _check_state(
    verdict: Verdict, state: MaintainedState, store: ObjectStore, study: str | None
) -> None:
    """Each study's maintained files against the study computed afresh from the log (the
    lock in force read from the store, not the copy kept beside the state)."""
    import tempfile

    from services.lock.baseline import lock_baseline
    from services.state.compare import state_differences

    folder = state.store.folder
    applied = state.store.applied()
    studies = [s for s in state.log.studies() if study is None or s == study]
    if applied is None or applied.fingerprint != state.fingerprint:
        for s in studies:
            verdict.states[s] = (
                "not compared: the state was written by other rules or code (or its APPLIED "
                "file is missing), so the next read recomputes it from the log in full"
            )
        return
    if applied.seq > verdict.log.head_seq or verdict.log.hash_at(applied.seq) != applied.hash:
        verdict.findings.append(
            Finding(
                str(folder / "APPLIED"),
                f"names segment {applied.seq} ({applied.hash[:16]}…), which the log does not "
                "hold: the state's files do not come from this log (delete "
                f"{folder} and they are rebuilt from it)",
            )
        )
        return
    with tempfile.TemporaryDirectory(prefix="tract-verify-") as scratch:
        fresh = functools.partial(lock_baseline, store, Path(scratch))  # read from the store
        for s in studies:
            found = state.store.read(s)
            if found is None and state.store.meta(s) is None:
                verdict.states[s] = "no files yet (the next read computes them from the log)"
                continue
            if found is None:
                differ = [("all tables", "its files cannot be read (reads compute from the log)")]
            else:
                differ = state_differences(found, state.recomputed(s, fresh))
                differ += _misplaced(state.store.misplaced(s))
            verdict.states[s] = MATCHES if not differ else "DIFFERS from the log"
            verdict.findings += [
                Finding(
                    f"{folder} ({s}, {table})",
                    f"{said}; the state's files were edited or damaged: delete {folder} and the "
                    "outcomes are rebuilt from the log",
                )
                for table, said in differ
            ]


def _misplaced(rows: pl.DataFrame) -> list[tuple[str, str]]:
    """Rows a point read (the page's subject view, `tract outcomes --subject`) would not find:
    kept in another bucket file than the one meta.json's layout sends it to."""
    said = []
    for (table,), part in rows.group_by("table", maintain_order=True):
        first = part.row(0, named=True)
        said.append(
            (
                str(table),
                f"{part['subject_id'].n_unique()} subject(s) kept in another bucket file than "
                f"the one a read of them opens, first {first['subject_id']} in "
                f"{Path(first['file']).name} (a point read, as the page's subject view makes, "
                f"opens {first['read']:03d}.parquet by meta.json's number of buckets)",
            )
        )
    return said


def _check_expected_head(verdict: Verdict, expect_head: str) -> None:
    seq_text, _, hash_ = expect_head.partition(":")
    try:
        seq = int(seq_text)
    except ValueError:
        verdict.findings.append(Finding("--expect-head", f"{expect_head!r} is not SEQ:HASH"))
        return
    if verdict.log.hash_at(seq) != hash_:
        verdict.findings.append(
            Finding(
                f"segment {seq}",
                "does not have the hash you noted earlier: the log was rewritten since",
            )
        )


def _lock_events(log: LogVerdict) -> pl.DataFrame:
    """The LOCK/UNLOCK events of the log, read from its (verified) segments."""
    files = [str(Path(log.folder) / e.file) for e in log.entries if e.topic == "lock"]
    schema = segment_schema("lock")
    if not files:
        return pl.DataFrame(schema=schema)
    readable = [f for f in files if Path(f).exists()]
    return (
        pl.scan_parquet(readable, schema=schema, missing_columns="insert", extra_columns="ignore")
        .sort("offset")
        .collect()
    )


def _check_lock(
    store: ObjectStore, row: dict[str, Any], log: LogVerdict, unlocked: set[tuple[str, str]]
) -> LockCheck:
    study, lock_id = row["study"], row["lock_id"]
    _, integrity, problem, receipt = check_snapshot(
        store, lock_prefix(study, lock_id), row["manifest_sha256"]
    )
    anchored = row.get("chain_seq")
    if problem is None and anchored is not None and log.hash_at(anchored) != row.get("chain_hash"):
        integrity = "damaged"
        problem = (
            f"the log's segment {anchored} is not the one this lock recorded at its cut: the log "
            "was rewritten after the lock was taken"
        )
    action = "UNLOCKED" if (study, lock_id) in unlocked else "LOCKED"
    return LockCheck(study, lock_id, action, integrity, receipt, anchored, problem)


def _unknown_locks(
    store: ObjectStore, published: pl.DataFrame, study: str | None, verdict: Verdict
) -> None:
    known = set(published.select("study", "lock_id").iter_rows())
    for key in store.list("locks"):
        parts = key.split("/")
        if len(parts) == 4 and parts[3] == MANIFEST and (parts[1], parts[2]) not in known:
            if study and parts[1] != study:
                continue
            verdict.findings.append(
                Finding(
                    store.location("/".join(parts[:3])),
                    "a lock the log never published (written outside tract, or the log lost it)",
                )
            )
