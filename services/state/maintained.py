"""The maintained state: every study's outcomes, categories and conflicts, kept up to date
batch by batch, so reading them costs a file read and a change costs what it touches.

    <home>/state/APPLIED            the log entry (sequence, hash) the state reflects, and the
                                    fingerprint of the rules and code that computed it
    <home>/state/<study>/CURRENT    the name of the study's current generation
    <home>/state/<study>/<gen>/     tracts, patients, conflicts, visits, new_tracts (Parquet)

Catching up reads the log's entries after APPLIED, gathers the subjects they touch per study,
recomputes those subjects alone (every rule is subject-local) and splices them into the
study's tables; a new generation is written beside the old one and CURRENT switches in one
rename. The conflict register is brought up to date in the same step. A lock or unlock, a
changed rule set or changed code recompute the study in full. The state can always be
rebuilt from the log (delete the folder), and a property test checks that it equals a full
re-adjudication after any sequence of batches.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

import polars as pl

from services.adjudicator.engine import Adjudication
from services.adjudicator.ruleset import RuleSet
from services.adjudicator.state import EVIDENCE_KINDS
from services.events import utc_now
from services.log import Batch, EventLog, Head
from services.log.errors import LogDamagedError
from services.log.eventlog import private_dir, write_private
from services.state.postlock import LockBaseline, flag_changes
from services.state.records import adjudicate_study, lock_cut, lock_in_force
from services.state.register import register_changes

TABLES = ("tracts", "patients", "conflicts", "visits", "new_tracts")
TOUCHES_SUBJECTS = frozenset({*EVIDENCE_KINDS, "committee_decision", "committee_vote"})
"""Kinds whose events change the outcomes of the subjects they name."""
STUDY_WIDE = frozenset({"lock"})
"""Kinds whose events change a whole study (the lock in force: post-lock flags)."""
FULL_SHARE = 0.25
"""Above this share of a study's subjects, recomputing the study in full is cheaper."""

BaselineLoader = Callable[[str, dict], "LockBaseline | None"]
"""(study, the lock event in force) -> the lock's outcomes, to flag what changed since."""


@cache
def code_fingerprint() -> str:
    """A digest of the code that computes outcomes: state written by other code is redone."""
    root = Path(__file__).resolve().parents[1]
    parts = sorted(
        [*(root / "adjudicator").rglob("*.py"), *(root / "state").glob("*.py")],
        key=lambda p: str(p.relative_to(root)),
    )
    digest = hashlib.sha256()
    for path in parts:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Applied:
    seq: int
    hash: str
    fingerprint: str


class StateFolder:
    """The maintained tables on disk (no logic: read, write, mark)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def applied(self) -> Applied | None:
        path = self.folder / "APPLIED"
        try:
            data = json.loads(path.read_bytes())
            return Applied(int(data["seq"]), str(data["hash"]), str(data["fingerprint"]))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None  # missing or unreadable: the state is rebuilt from the log

    def mark(self, applied: Applied) -> None:
        private_dir(self.folder)
        write_private(
            self.folder / "APPLIED",
            json.dumps(
                {"seq": applied.seq, "hash": applied.hash, "fingerprint": applied.fingerprint}
            ).encode(),
        )

    def read(self, study: str, subjects: Collection[str] | None = None) -> Adjudication | None:
        """The study's tables (only the rows of ``subjects`` when given: a point read)."""
        base = self.folder / _safe(study)
        try:
            generation = base / (base / "CURRENT").read_text().strip()
            meta = json.loads((generation / "meta.json").read_bytes())
            if subjects is None:
                tables = {n: pl.read_parquet(generation / f"{n}.parquet") for n in TABLES}
            else:
                wanted = pl.Series(list(subjects), dtype=pl.String)
                tables = dict(
                    zip(
                        TABLES,
                        pl.collect_all(
                            [
                                pl.scan_parquet(generation / f"{n}.parquet").filter(
                                    pl.col("subject_id").is_in(wanted)
                                )
                                for n in TABLES
                            ]
                        ),
                        strict=True,
                    )
                )
        except (FileNotFoundError, NotADirectoryError, ValueError, OSError):
            return None
        return Adjudication(
            study=meta["study"],
            rule_set=meta["rule_set"],
            rule_set_version=meta["rule_set_version"],
            **tables,
        )

    def write(self, result: Adjudication, seq: int) -> None:
        base = private_dir(self.folder / _safe(result.study))
        name = f"g{seq:012d}-{uuid.uuid4().hex[:8]}"
        tmp = base / f".{name}"
        tmp.mkdir(mode=0o700)
        for table in TABLES:
            getattr(result, table).write_parquet(tmp / f"{table}.parquet", compression="lz4")
        meta = {
            "study": result.study,
            "rule_set": result.rule_set,
            "rule_set_version": result.rule_set_version,
            "seq": seq,
            "written_at": utc_now(),
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        tmp.rename(base / name)
        previous = (base / "CURRENT").read_text().strip() if (base / "CURRENT").exists() else None
        write_private(base / "CURRENT", name.encode())
        for old in base.iterdir():  # keep the one readers may still be reading
            if old.is_dir() and old.name not in (name, previous):
                shutil.rmtree(old, ignore_errors=True)


def _safe(study: str) -> str:
    """A study id as a folder name (ids are letters, digits, '.', '_' and '-')."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in study) or "_"


class MaintainedState:
    """Outcomes kept up to date with the log (see the module docstring)."""

    def __init__(
        self,
        folder: Path,
        log: EventLog,
        rules: RuleSet,
        baseline: BaselineLoader | None = None,
    ) -> None:
        self.store = StateFolder(folder)
        self.log, self.rules, self.baseline = log, rules, baseline
        self.fingerprint = f"{rules.sha256[:16]}-{code_fingerprint()}"

    def adjudication(self, study: str, subjects: Collection[str] | None = None) -> Adjudication:
        """The study's current adjudication (of ``subjects`` only, when given), caught up with
        the log first."""
        self.catch_up()
        found = self.store.read(study, subjects)
        if found is None:  # a study with no events yet
            return adjudicate_study(self.log, study, self.rules, subjects=subjects)
        return found

    def up_to_date(self) -> bool:
        applied = self.store.applied()
        head = self.log.head()
        return (
            applied is not None
            and applied.fingerprint == self.fingerprint
            and (applied.seq, applied.hash) == (head.seq, head.hash)
        )

    def catch_up(self) -> int:
        """Apply the log's entries the state has not seen; returns how many studies changed."""
        if self.up_to_date():
            return 0
        with self.log.exclusive():
            if self.up_to_date():
                return 0
            applied = self.store.applied()
            head = self.log.head()
            if applied is not None:
                self._check_not_lost(applied, head)
            fresh = applied is None or applied.fingerprint != self.fingerprint
            since = 0 if fresh or applied is None else applied.seq
            touched = self._touched(since, full=fresh)
            at = utc_now()
            batches = [
                self._refresh(study, subjects, at, head.seq)
                for study, subjects in sorted(touched.items())
            ]
            self.log.append([b for b in batches if len(b)])
            final = self.log.head()
            self.store.mark(Applied(final.seq, final.hash, self.fingerprint))
            return len(touched)

    def check_log(self) -> None:
        """Refuse (loudly) a log that lost or replaced what the state once reflected; writers
        call it before appending anything."""
        applied = self.store.applied()
        if applied is not None:
            self._check_not_lost(applied, self.log.head())

    def _check_not_lost(self, applied: Applied, head: Head) -> None:
        """The state once reflected entry ``applied.seq``: if the log no longer reaches it, or
        holds another entry there, committed events were lost or replaced. That is said, not
        papered over by rebuilding from what is left."""
        if applied.seq == 0:
            return
        entry = next((e for e in self.log.entries() if e.seq == applied.seq), None)
        if entry is None or entry.hash != applied.hash:
            what = (
                f"ends at segment {head.seq}"
                if entry is None
                else f"holds another segment {applied.seq}"
            )
            raise LogDamagedError(
                f"{self.store.folder / 'APPLIED'} says the outcomes reflect segment {applied.seq} "
                f"({applied.hash[:16]}…) but the log in {self.log.folder} {what}: committed "
                "events are missing or were replaced. Do not ingest; run `tract verify` and "
                "restore the log from a backup (if you restored an older log on purpose, delete "
                f"{self.store.folder} and the outcomes are rebuilt from it)"
            )

    def _touched(self, since: int, full: bool) -> dict[str, set[str] | None]:
        """Per study, the subjects whose outcomes may have changed (None: all of them)."""
        touched: dict[str, set[str] | None] = {}
        entries = [e for e in self.log.entries() if e.seq > since]
        if full:
            return dict.fromkeys(self.log.studies())
        by_study: dict[str, list[str]] = {}
        for e in entries:
            if e.topic in STUDY_WIDE:
                touched[e.study] = None
            elif e.topic in TOUCHES_SUBJECTS:
                by_study.setdefault(e.study, []).append(str(self.log.folder / e.file))
        for study, files in by_study.items():
            if study in touched:
                continue
            subjects: set[str] = set()
            for file in files:  # one read per file: the kinds' columns differ
                subjects.update(pl.read_parquet(file, columns=["subject_id"])["subject_id"])
            previous = self.store.read(study)
            if previous is None or len(subjects) > FULL_SHARE * max(previous.patients.height, 1):
                touched[study] = None
            else:
                touched[study] = subjects
        return touched

    def _refresh(self, study: str, subjects: Collection[str] | None, at: str, seq: int) -> Batch:
        lock = lock_in_force(self.log, study)
        previous = None if subjects is None else self.store.read(study)
        if previous is None:
            subjects = None
        partial = adjudicate_study(
            self.log, study, self.rules, subjects=subjects, lock_cut=lock_cut(lock)
        )
        register = self.log.records("conflict_change", study, subjects=subjects).collect()
        changes, conflicts = register_changes(study, partial.conflicts, register, at, subjects)
        partial = _with(partial, conflicts=conflicts)
        result = (
            partial if previous is None or subjects is None else splice(previous, partial, subjects)
        )
        baseline = self.baseline(study, lock) if lock and self.baseline else None
        result = in_key_order(flag_changes(result, baseline))
        self.store.write(result, seq)
        return changes


def _with(result: Adjudication, **tables: pl.DataFrame) -> Adjudication:
    values = {f.name: getattr(result, f.name) for f in fields(result)}
    return Adjudication(**(values | tables))


def splice(
    previous: Adjudication, partial: Adjudication, subjects: Collection[str]
) -> Adjudication:
    """``previous`` with the rows of ``subjects`` replaced by ``partial``'s, in key order."""
    wanted = pl.Series(list(subjects), dtype=pl.String)
    spliced = {}
    for name in TABLES:
        old, new = getattr(previous, name), getattr(partial, name)
        kept = old.filter(~pl.col("subject_id").is_in(wanted))
        spliced[name] = pl.concat([kept.select(new.columns), new], how="vertical_relaxed")
    return _with(partial, **spliced)


KEYS = {
    "tracts": ("subject_id", "tract_id"),
    "patients": ("subject_id",),
    "conflicts": ("type", "subject_id", "tract_id", "about", "conflict_id"),
    "visits": ("subject_id", "tract_id", "visit"),
    "new_tracts": ("subject_id", "tract_id"),
}


def in_key_order(result: Adjudication) -> Adjudication:
    """Every table sorted by its key, so a spliced state and a full one read alike."""
    return _with(
        result,
        **{name: getattr(result, name).sort(KEYS[name], maintain_order=True) for name in TABLES},
    )
