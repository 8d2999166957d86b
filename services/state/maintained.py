"""The maintained state: every study's outcomes, categories and conflicts, kept up to date
batch by batch, so reading them costs a file read and a change costs what it touches.

    <home>/state/APPLIED            the log entry (sequence, hash) the state reflects, and the
                                    fingerprint of the rules and code that computed it
    <home>/state/<study>/CURRENT    the name of the study's current generation
    <home>/state/<study>/<gen>/     tracts/, patients/, conflicts/, new_tracts/: each split
                                    by subject into buckets (NNN.parquet), and meta.json

Catching up reads the log's entries after APPLIED, gathers the subjects they touch per study,
recomputes those subjects alone (every rule is subject-local) and rewrites only their
buckets; a new generation is written beside the old one (untouched buckets are hard links,
not copies) and CURRENT switches in one rename. The conflict register is brought up to date
in the same step. A lock or unlock, a changed rule set or changed code recompute the study in
full. Each visit's status per tract is not kept: it is computed from the log for the subjects
a reader asks for (a page's few). The state can always be
rebuilt from the log (delete the folder), and a property test checks that it equals a full
re-adjudication after any sequence of batches.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

import polars as pl
import polars_hash as plh

from services.adjudicator.engine import Adjudication
from services.adjudicator.ruleset import RuleSet
from services.adjudicator.state import EVIDENCE_KINDS
from services.events import among, utc_now
from services.files import FILE_MODE, make_private_dirs, private_dir, write_private
from services.log import Batch, EventLog, Head
from services.log.errors import LogDamagedError
from services.state.postlock import LockBaseline, flag_changes
from services.state.records import (
    IN_FORCE_ACTIONS,
    Records,
    RecordsAt,
    adjudicate_study,
    lock_cut,
    lock_in_force,
)
from services.state.register import register_changes

TABLES = ("tracts", "patients", "conflicts", "visits", "new_tracts")
KEPT = ("tracts", "patients", "conflicts", "new_tracts")
"""The tables the state's files hold, largest first: two writers take them in this order, so
both finish at about the same time. The visits (each visit's status per tract) are not kept:
at 100,000 subjects they are 1.3M rows, as long to write as the rest together, and only a
page about a few subjects shows them (computing them for those costs a point adjudication). A
100k ingest took 15.6-16.3 s without them, 17.2-17.6 s with them (three alternated pairs)."""
TOUCHES_SUBJECTS = frozenset({*EVIDENCE_KINDS, "committee_decision", "committee_vote"})
"""Kinds whose events change the outcomes of the subjects they name."""
STUDY_WIDE = frozenset({"lock"})
"""Kinds whose events may change a whole study: the lock in force (post-lock flags), which
only the events of ``IN_FORCE_ACTIONS`` change (a claim or a raise recomputes nothing)."""
FULL_SHARE = 0.25
"""Above this share of a study's subjects, recomputing the study in full is cheaper."""
SUBJECTS_PER_BUCKET, MAX_BUCKETS = 3_000, 64
"""A study's tables are split by subject into about one file per 3,000 subjects (at most 64),
so a refresh of a few subjects rewrites a few small files, not the study. Each file costs
~1.5 ms to write whatever it holds (the tract table has 63 columns): at 100,000 subjects, 33
files a table write the state in 1.2 s where 50 took 1.4 s, and a point refresh, which links
the other buckets, is no slower (67 ms against 73)."""

PARQUET = {"compression": "zstd", "compression_level": 1}
"""How bucket files are written: as the log's segments, half LZ4's size for about its time."""

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

    def meta(self, study: str) -> dict | None:
        """The current generation's meta (buckets, subjects, rule set), or None."""
        generation = self._current(study)
        if generation is None:
            return None
        try:
            return json.loads((generation / "meta.json").read_bytes())
        except (OSError, ValueError):
            return None

    def _current(self, study: str) -> Path | None:
        base = self.folder / _safe(study)
        try:
            return base / (base / "CURRENT").read_text().strip()
        except OSError:
            return None

    def read(
        self,
        study: str,
        subjects: Collection[str] | None = None,
        tables: Collection[str] = TABLES,
        ordered: bool = True,
    ) -> Adjudication | None:
        """The study's kept tables in key order (only the rows of ``subjects`` when given: a
        point read, which opens only their buckets; only ``tables``, the others left empty).
        ``ordered=False``: in bucket order, for a reader that only counts (sorting the tract
        table is most of a whole read: 0.13 of 0.22 s at 100,000 subjects)."""
        generation, meta = self._current(study), self.meta(study)
        if generation is None or meta is None:
            return None
        buckets = int(meta["buckets"])
        tables = [name for name in tables if name in KEPT]
        try:
            if subjects is None:
                plans = [pl.scan_parquet(generation / name / "*.parquet") for name in tables]
            else:
                wanted = pl.Series(list(subjects), dtype=pl.String)
                chosen = sorted(set(bucket_of(wanted, buckets).to_list()))
                plans = [
                    pl.scan_parquet(
                        [generation / name / f"{b:03d}.parquet" for b in chosen]
                    ).filter(among("subject_id", wanted))
                    for name in tables
                ]
            if ordered:
                plans = [
                    plan.sort(KEYS[name], maintain_order=True)
                    for plan, name in zip(plans, tables, strict=True)
                ]
            read = dict(zip(tables, pl.collect_all(plans), strict=True))
        except (OSError, pl.exceptions.ComputeError):
            return None
        return Adjudication(
            study=meta["study"],
            rule_set=meta["rule_set"],
            rule_set_version=meta["rule_set_version"],
            **{name: read.get(name, pl.DataFrame()) for name in TABLES},
        )

    def misplaced(self, study: str) -> pl.DataFrame:
        """Rows kept in a bucket file other than the one a point read of their subject opens
        (by the layout meta.json declares): table, subject_id, file, and the bucket read."""
        generation, meta = self._current(study), self.meta(study)
        columns = {"table": pl.String, "subject_id": pl.String, "file": pl.String, "read": pl.Int64}
        if generation is None or meta is None:
            return pl.DataFrame(schema=columns)
        plans = [
            pl.scan_parquet(generation / name / "*.parquet", include_file_paths="file")
            .select("subject_id", "file", table=pl.lit(name))
            .with_columns(read=bucket_of(pl.col("subject_id"), int(meta["buckets"])))
            .filter(
                pl.col("file")
                .str.extract(r"/(\d+)\.parquet$")
                .cast(pl.Int64, strict=False)
                .ne_missing(pl.col("read"))
            )
            .unique(["table", "subject_id", "file"], maintain_order=True)
            for name in KEPT
        ]
        return pl.concat(pl.collect_all(plans)).select(list(columns))

    def write(
        self, result: Adjudication, seq: int, subjects: Collection[str] | None = None
    ) -> None:
        """A new generation of the study: in full, or (``subjects``) with the buckets of those
        subjects rewritten from ``result`` (their rows only) and every other bucket linked, not
        copied, from the current generation. Readers switch with CURRENT in one rename."""
        base = private_dir(self.folder / _safe(result.study))
        previous = self._current(result.study)
        old_meta = self.meta(result.study)
        if subjects is None or previous is None or old_meta is None:
            n_subjects = result.patients.height
            buckets = max(1, min(MAX_BUCKETS, n_subjects // SUBJECTS_PER_BUCKET))
            touched = set(range(buckets))
        else:
            buckets, n_subjects = int(old_meta["buckets"]), int(old_meta["subjects"])
            wanted = pl.Series(list(subjects), dtype=pl.String)
            touched = set(bucket_of(wanted, buckets).to_list())
        name = f"g{seq:012d}-{uuid.uuid4().hex[:8]}"
        tmp = base / f".{name}"
        with ThreadPoolExecutor(max_workers=2) as writers:  # Polars lets go of the GIL
            list(
                writers.map(
                    lambda table: _write_table(
                        tmp / table,
                        getattr(result, table),
                        KEYS[table],
                        buckets,
                        touched,
                        None if previous is None else previous / table,
                        subjects,
                    ),
                    KEPT,
                )
            )
        if subjects is not None and previous is not None:
            n_subjects = (
                pl.scan_parquet(tmp / "patients" / "*.parquet").select(pl.len()).collect().item()
            )
        meta = {
            "study": result.study,
            "rule_set": result.rule_set,
            "rule_set_version": result.rule_set_version,
            "seq": seq,
            "buckets": buckets,
            "subjects": n_subjects,
            "written_at": utc_now(),
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        (tmp / "meta.json").chmod(FILE_MODE)
        tmp.rename(base / name)
        write_private(base / "CURRENT", name.encode())
        for old in base.iterdir():  # keep the one readers may still be reading
            if old.is_dir() and old.name not in (name, previous.name if previous else None):
                shutil.rmtree(old, ignore_errors=True)


def _write_table(
    folder: Path,
    table: pl.DataFrame,
    keys: tuple[str, ...],
    buckets: int,
    touched: set[int],
    previous: Path | None,
    subjects: Collection[str] | None,
) -> None:
    """One table's bucket files: the ``touched`` ones written from ``table`` (with the rows a
    point refresh keeps from ``previous``), the others linked from it."""
    make_private_dirs(folder)
    parts = {
        key[0]: part.drop("_bucket")
        for key, part in table.with_columns(_bucket=bucket_of(pl.col("subject_id"), buckets))
        .partition_by("_bucket", as_dict=True)
        .items()
    }
    for b in range(buckets):
        target = folder / f"{b:03d}.parquet"
        if b not in touched:
            os.link(previous / target.name, target)  # type: ignore[operator]
            continue
        new = parts.get(b, table.clear())
        if subjects is not None and previous is not None:
            kept = pl.read_parquet(previous / target.name).filter(
                ~pl.col("subject_id").is_in(pl.Series(list(subjects), dtype=pl.String).implode())
            )
            new = pl.concat([kept.select(new.columns), new], how="vertical_relaxed")
        new.sort(keys, maintain_order=True).write_parquet(target, **PARQUET)
        target.chmod(FILE_MODE)


def bucket_of(subject_ids: pl.Series | pl.Expr, buckets: int) -> pl.Series | pl.Expr:
    """The bucket a subject's rows live in: a stable hash of its id (the same on every machine
    and version, xxh3 from polars-hash), so a refresh of a few subjects rewrites a few files."""
    if isinstance(subject_ids, pl.Series):
        return pl.select(bucket_of(pl.lit(subject_ids), buckets)).to_series()
    return (plh.concat_str(subject_ids).nchash.xxh3_64() % buckets).cast(pl.Int64)


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

    def adjudication(
        self,
        study: str,
        subjects: Collection[str] | None = None,
        tables: Collection[str] = TABLES,
        ordered: bool = True,
    ) -> Adjudication:
        """The study's current adjudication (of ``subjects`` only, when given; of ``tables``
        only; ``ordered=False``: rows in no set order), caught up with the log first. The
        visits, not kept, are computed from the log: ask for them for a few subjects."""
        self.catch_up()
        found = self.store.read(study, subjects, tables, ordered)
        if found is None:  # a study with no events yet
            return adjudicate_study(self.log, study, self.rules, subjects=subjects)
        if "visits" not in tables:
            return found
        records = self._applied_records()
        lock = lock_cut(lock_in_force(records, study))
        visits = adjudicate_study(
            records, study, self.rules, subjects=subjects, lock_cut=lock
        ).visits
        return _with(found, visits=visits.sort(KEYS["visits"]) if ordered else visits)

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
                actions = pl.read_parquet(self.log.folder / e.file, columns=["action"])["action"]
                if actions.is_in(list(IN_FORCE_ACTIONS)).any():
                    touched[e.study] = None
            elif e.topic in TOUCHES_SUBJECTS:
                by_study.setdefault(e.study, []).append(str(self.log.folder / e.file))
        for study, files in by_study.items():
            if study in touched:
                continue
            subjects: set[str] = set()
            for file in files:  # one read per file: the kinds' columns differ
                subjects.update(pl.read_parquet(file, columns=["subject_id"])["subject_id"])
            meta = self.store.meta(study)
            if meta is None or len(subjects) > FULL_SHARE * max(int(meta["subjects"]), 1):
                touched[study] = None
            else:
                touched[study] = subjects
        return touched

    def _refresh(self, study: str, subjects: Collection[str] | None, at: str, seq: int) -> Batch:
        """Recompute ``subjects`` of ``study`` (all when None), bring the conflict register up
        to date for them, flag what differs from the lock in force, and write the generation."""
        if subjects is not None and self.store.meta(study) is None:
            subjects = None
        changes, result = self._compute(self.log, study, subjects, at, self.baseline)
        self.store.write(result, seq, subjects)
        return changes

    def _compute(
        self,
        source: Records,
        study: str,
        subjects: Collection[str] | None,
        at: str,
        baseline: BaselineLoader | None,
    ) -> tuple[Batch, Adjudication]:
        """The register's new changes and the tables a refresh of ``subjects`` writes."""
        lock = lock_in_force(source, study)
        partial = adjudicate_study(
            source, study, self.rules, subjects=subjects, lock_cut=lock_cut(lock)
        )
        register = source.records("conflict_change", study, subjects=subjects).collect()
        changes, conflicts = register_changes(study, partial.conflicts, register, at, subjects)
        frozen = baseline(study, lock) if lock and baseline else None
        return changes, flag_changes(_with(partial, conflicts=conflicts), frozen)

    def recomputed(
        self,
        study: str,
        baseline: BaselineLoader | None = None,
        subjects: Collection[str] | None = None,
    ) -> Adjudication:
        """What the state's files of ``study`` hold if nobody edited them: the study (or
        ``subjects`` of it) computed from the log, as far as APPLIED says the state reflects
        it, written nowhere (what `tract verify` and a subject's page compare them with).
        ``baseline``: the lock's outcomes read afresh, not the copy kept beside the state."""
        _, result = self._compute(
            self._applied_records(), study, subjects, utc_now(), baseline or self.baseline
        )
        return in_key_order(result)

    def _applied_records(self) -> Records:
        """The log's records as far as APPLIED says the state reflects them."""
        applied = self.store.applied()
        if applied is not None and applied.seq != self.log.head().seq:
            return RecordsAt(self.log, self.log.positions(upto_seq=applied.seq))
        return self.log


def _with(result: Adjudication, **tables: pl.DataFrame) -> Adjudication:
    values = {f.name: getattr(result, f.name) for f in fields(result)}
    return Adjudication(**(values | tables))


KEYS = {
    "tracts": ("subject_id", "tract_id"),
    "patients": ("subject_id",),
    "conflicts": ("type", "subject_id", "tract_id", "about", "conflict_id"),
    "visits": ("subject_id", "tract_id", "visit"),
    "new_tracts": ("subject_id", "tract_id"),
}


def in_key_order(result: Adjudication) -> Adjudication:
    """Every table sorted by its key, as the state reads it back."""
    return _with(
        result,
        **{name: getattr(result, name).sort(KEYS[name], maintain_order=True) for name in TABLES},
    )
