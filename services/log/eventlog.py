"""The embedded default: an append-only, hash-chained, columnar event log in one folder.

    <home>/log/LOG                 what this folder is (format, log id), written once
    <home>/log/index.db            the chain of segment entries (SQLite, rollback journal)
    <home>/log/HEAD                the last committed entry (sequence and hash), a second record
    <home>/log/segments/NNN.parquet one file per appended batch, never changed

Appending a batch writes its segment file (flushed to disk, then renamed into place) and then
commits its entry to the index; several batches commit in one transaction, so an ingest run's
accepted rows, dead letters and accounting are all there or none. A crash between the two
leaves a file beyond the last entry, which nothing reads and the next writer removes. Offsets
are dense per kind; an event id already in a kind is not appended twice.

Opening checks what is cheap to check (SQLite's quick_check, the chain, the files' presence
and sizes, HEAD against the index) and refuses, naming the file, when committed data is
missing or altered: a damaged log is never answered with zeros. ``verify`` also hashes every
segment file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl

from services.events import Event, among, utc_now
from services.files import (
    private_database,
    private_dir,
    private_file,
    write_private,
    write_private_with,
)
from services.log.chain import GENESIS, Break, Entry, file_sha256, link, walk
from services.log.errors import LogDamagedError, NotALogError
from services.log.faults import crash_point
from services.log.segment import Batch, batch_of_events, conform, segment_schema, write_segment

MARKER, INDEX, HEAD, LOCK, SEGMENTS = "LOG", "index.db", "HEAD", "writer.lock", "segments"
FORMAT_VERSION = 1
STUDY_KINDS = ("subject", "tract", "clinical_exam", "mri_read", "committee_decision")
"""A study exists once any of these kinds holds an event of it."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    study TEXT NOT NULL,
    first_offset INTEGER NOT NULL,
    count INTEGER NOT NULL,
    file TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    appended_at TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_by_topic ON segments (topic, study, first_offset);
"""
_COLUMNS = (
    "seq, topic, study, first_offset, count, file, bytes, sha256, appended_at, prev_hash, hash"
)

Extra = Callable[[sqlite3.Connection], None]
"""Statements a caller commits together with an append (see :meth:`EventLog.append`)."""


@dataclass(frozen=True)
class Head:
    """The chain's last entry: what an anchor (a lock, an auditor's note) records."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


class EventLog:
    """An :class:`~services.bus.EventBus` and record source on a local folder.

    A subclass may keep tables of its own in the index (``TABLES``: ``CREATE TABLE IF NOT
    EXISTS`` statements, created with the index) and write them in the same transaction as the
    segments it appends (``append(..., extra=...)``); the log itself never reads them.
    """

    TABLES = ""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self._db: sqlite3.Connection | None = None
        self._log_id: str | None = None
        self._checked = 0  # entries whose chain was checked by this process
        self._last_hash = GENESIS
        self._ends: dict[str, int] = {}  # per kind, the end offset of the checked entries
        self._mutex = threading.RLock()
        self._depth = 0
        self._lock_handle: object | None = None

    # opening ---------------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return (self.folder / MARKER).exists()

    def _index(self, create: bool = False) -> sqlite3.Connection | None:
        """The index connection, checked on first use; None for a log never written to."""
        if self._db is not None:
            self._check_new()
            return self._db
        if not self.exists:
            if not create:
                if (self.folder / INDEX).exists() or (self.folder / SEGMENTS).exists():
                    raise NotALogError(
                        f"{self.folder} holds log files but no {MARKER} marker: it is not a tract "
                        "event log, or its marker was removed; restore the folder from a backup"
                    )
                return None
            self._create()
        self._open()
        return self._db

    def _create(self) -> None:
        private_dir(self.folder.parent)
        private_dir(self.folder)
        private_dir(self.folder / SEGMENTS)
        if (self.folder / INDEX).exists():
            raise NotALogError(
                f"{self.folder / INDEX} exists without the log's {MARKER} marker: it is not a "
                "tract event log; move it away or point TRACT_HOME at the right folder"
            )
        db = self._connect(self.folder / INDEX)
        db.executescript(_SCHEMA + self.TABLES)
        db.close()
        (self.folder / INDEX).chmod(0o600)
        marker = {
            "format": "tract-event-log",
            "version": FORMAT_VERSION,
            "log_id": uuid.uuid4().hex,
            "created_at": utc_now(),
        }
        write_private(self.folder / MARKER, json.dumps(marker, indent=2).encode())

    def _open(self) -> None:
        try:
            marker = json.loads((self.folder / MARKER).read_bytes())
            if marker.get("format") != "tract-event-log":
                raise ValueError(marker.get("format"))
        except (ValueError, json.JSONDecodeError, AttributeError):
            raise NotALogError(
                f"{self.folder / MARKER} is not a tract event log marker; restore it from a backup"
            ) from None
        if marker.get("version") != FORMAT_VERSION:
            raise NotALogError(
                f"{self.folder} is a tract event log of format {marker.get('version')}, this "
                f"version of tract reads format {FORMAT_VERSION}"
            )
        index = self.folder / INDEX
        if not index.is_file() or index.stat().st_size == 0:
            raise LogDamagedError(
                f"{index} is missing or empty while {self.folder / MARKER} says a log was "
                "created here: the index of committed events is lost; restore it from a backup "
                "(`tract verify` names what is missing)"
            )
        self._log_id = str(marker["log_id"])
        for path in (self.folder, self.folder / SEGMENTS):  # a home from an older version
            if path.exists():
                private_dir(path)
        private_file(self.folder / MARKER)
        private_database(index)
        db = self._connect(index)
        try:
            problem = db.execute("PRAGMA quick_check").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as exc:
            db.close()
            raise LogDamagedError(
                f"{index} is damaged ({exc}); restore it from a backup (`tract verify` tells "
                "what is intact)"
            ) from None
        if problem != "ok" or "segments" not in tables:
            db.close()
            raise LogDamagedError(
                f"{index} is damaged (SQLite quick_check: {problem}); restore it from a backup"
            )
        self._db = db
        self._check_new()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            db.execute("PRAGMA busy_timeout=30000")
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "delete":
                db.execute("PRAGMA journal_mode=DELETE")
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as exc:
            raise LogDamagedError(
                f"{path} is damaged or not a tract log index ({exc}); restore it from a backup"
            ) from None
        return db

    def _check_new(self) -> None:
        """Walk the entries appended since the last check (all of them the first time): the
        chain must hold and every segment file must be there with its size; HEAD must agree.
        HEAD is read first: a writer commits the index before it writes HEAD, so the index
        read after it reaches at least as far, however many segments a writer commits
        meanwhile (read the other way round, a live log looked as if it had lost them)."""
        assert self._db is not None
        head = self._read_head()
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM segments WHERE seq > ? ORDER BY seq", (self._checked,)
        ).fetchall()
        entries = [Entry(*row) for row in rows]
        if entries:
            if entries[0].seq != self._checked + 1:
                problem: Break | None = Break(
                    self._checked + 1, f"segment {self._checked + 1} is missing from the index"
                )
            else:
                problem, ends = walk(self._log_id or "", entries, self._last_hash, self._ends)
            if problem is not None:
                raise LogDamagedError(
                    f"{self.folder / INDEX}: {problem.problem}; the log was altered or damaged. "
                    "Run `tract verify` for the full account and restore from a backup"
                )
            for e in entries:
                path = self.folder / e.file
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    raise LogDamagedError(
                        f"{path} (segment {e.seq}: {e.count} {e.topic} event(s) of {e.study}) is "
                        "missing; committed data is lost. Restore it from a backup"
                    ) from None
                if size != e.bytes:
                    raise LogDamagedError(
                        f"{path} (segment {e.seq}) has {size} bytes, the index says {e.bytes}; "
                        "it was altered or truncated. Restore it from a backup"
                    )
            self._checked, self._last_hash, self._ends = entries[-1].seq, entries[-1].hash, ends
        if head is not None:
            self._check_head(*head)

    def _read_head(self) -> tuple[int, str] | None:
        """HEAD's segment and hash; None before the first commit has written it (a crash
        between a first commit and its HEAD: the next append writes it)."""
        path = self.folder / HEAD
        try:
            seq_text, hash_ = path.read_text().split()
            return int(seq_text), hash_
        except FileNotFoundError:
            return None
        except ValueError:
            raise LogDamagedError(f"{path} is damaged; restore it from a backup") from None

    def _check_head(self, seq: int, hash_: str) -> None:
        path = self.folder / HEAD
        if seq > self._checked:
            raise LogDamagedError(
                f"{path} says segment {seq} was committed, but the index ends at segment "
                f"{self._checked}: committed events are missing from {self.folder / INDEX}. "
                "Do not ingest; restore the index from a backup"
            )
        if seq:
            row = self._db.execute("SELECT hash FROM segments WHERE seq = ?", (seq,)).fetchone()  # type: ignore[union-attr]
            if row is None or row[0] != hash_:
                raise LogDamagedError(
                    f"{path} does not match segment {seq} of the index: the index was rewritten. "
                    "Run `tract verify` and restore from a backup"
                )

    # writing ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the log's writer lock across processes (re-entrant within this process): a
        check-then-append (ingest identity, a decision's checks) must not interleave with
        another one."""
        with self._mutex:
            if self._depth == 0:
                try:
                    private_dir(self.folder)
                    handle = open(self.folder / LOCK, "a")  # noqa: SIM115 - held until released
                    fcntl.flock(handle, fcntl.LOCK_EX)
                except OSError as exc:
                    raise LogDamagedError(
                        f"cannot take the log's writer lock {self.folder / LOCK} ({exc.strerror}); "
                        "it must be a plain file the platform's user can write: remove whatever is "
                        "there (nothing is lost: it holds no data) or fix the permissions"
                    ) from None
                self._lock_handle = handle
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    handle = self._lock_handle
                    self._lock_handle = None
                    fcntl.flock(handle, fcntl.LOCK_UN)  # type: ignore[arg-type]
                    handle.close()  # type: ignore[union-attr]

    def append(self, batches: Sequence[Batch], extra: Extra | None = None) -> int:
        """Append each non-empty batch as one segment, all in one commit; events whose id the
        kind already holds (or that repeat in the batch) are dropped (unless the batch vouches
        they are new). Returns how many events were appended.

        ``extra(db)`` runs inside that commit, after the new entries are inserted: what it
        writes to the subclass's own tables commits or rolls back with the segments (the Kafka
        adjudicator's positions and outbox). With ``extra`` the commit happens even when every
        event was a repeat."""
        with self.exclusive():
            db = self._index(create=True)
            assert db is not None
            self._remove_uncommitted()
            ends = self.positions()
            seq, previous = self._checked, self._last_hash
            written: list[Path] = []
            entries: list[Entry] = []
            appended = 0
            try:
                for batch in batches:
                    fresh = self.new_events(batch)
                    if fresh.height == 0:
                        continue
                    first = ends.get(batch.kind, 0)
                    segment = conform(Batch(batch.kind, batch.study, fresh), first)
                    seq += 1
                    name = f"{SEGMENTS}/{seq:012d}.parquet"
                    write_private_with(self.folder / name, partial(write_segment, segment))
                    written.append(self.folder / name)
                    crash_point("segment-written")
                    at = utc_now()
                    digest, size = file_sha256(self.folder / name)
                    hash_ = link(
                        self._log_id or "",
                        seq,
                        batch.kind,
                        batch.study,
                        first,
                        fresh.height,
                        digest,
                        at,
                        previous,
                    )
                    entries.append(
                        Entry(
                            seq,
                            batch.kind,
                            batch.study,
                            first,
                            fresh.height,
                            name,
                            size,
                            digest,
                            at,
                            previous,
                            hash_,
                        )
                    )
                    ends[batch.kind] = first + fresh.height
                    previous = hash_
                    appended += fresh.height
                if not entries and extra is None:
                    return 0
                if entries:
                    crash_point("segments-written")
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.executemany(
                        f"INSERT INTO segments ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        [tuple(e.to_dict().values()) for e in entries],
                    )
                    if extra is not None:
                        extra(db)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except BaseException:
                for path in written:
                    path.unlink(missing_ok=True)
                raise
            if not entries:
                return 0
            for e in entries:
                self._ends[e.topic] = e.end
            self._checked, self._last_hash = entries[-1].seq, entries[-1].hash
            crash_point("index-committed")
            write_private(self.folder / HEAD, f"{self._checked} {self._last_hash}\n".encode())
            return appended

    def new_events(self, batch: Batch) -> pl.DataFrame:
        """The batch's events the log does not hold yet (by event id; once each): what an append
        of it would add. Call under the writer lock to act on the answer."""
        frame = batch.frame
        if not batch.unique and frame["event_id"].n_unique() < frame.height:  # count, not copy
            frame = frame.unique("event_id", keep="first", maintain_order=True)
        if batch.new:
            return frame
        ids = frame.select("event_id")
        known = (
            self.records(batch.kind, batch.study, columns=("event_id",))
            .join(ids.lazy(), on="event_id", how="semi")
            .collect()
        )
        if known.height:
            frame = frame.join(known, on="event_id", how="anti", maintain_order="left")
        return frame

    def _remove_uncommitted(self) -> None:
        """Segment files beyond the last committed entry are appends that crashed before their
        commit: nothing ever read them, and their events are published again by the re-run."""
        folder = self.folder / SEGMENTS
        if not folder.exists():
            return
        for path in folder.iterdir():
            stem = path.name.split(".")[0]
            if path.name.startswith("."):
                path.unlink(missing_ok=True)  # a temporary file of a crashed write
            elif stem.isdigit() and int(stem) > self._checked:
                path.unlink(missing_ok=True)

    def publish(self, events: Sequence[Event]) -> int:
        """Append per-event objects (decisions, votes, locks, access records): one segment per
        kind and study, in one commit."""
        groups: dict[tuple[str, str], list[Event]] = {}
        for event in events:
            groups.setdefault((event.kind, event.study), []).append(event)
        return self.append(
            [batch_of_events(kind, study, group) for (kind, study), group in groups.items()]
        )

    # reading ---------------------------------------------------------------------------------
    def entries(
        self, topic: str | None = None, study: str | None = None, upto: int | None = None
    ) -> list[Entry]:
        db = self._index()
        if db is None:
            return []
        sql, args = f"SELECT {_COLUMNS} FROM segments WHERE seq <= ?", [self._checked]
        if topic is not None:
            sql += " AND topic = ?"
            args.append(topic)
        if study is not None:
            sql += " AND study = ?"
            args.append(study)
        if upto is not None:
            sql += " AND first_offset < ?"
            args.append(upto)
        return [Entry(*row) for row in db.execute(sql + " ORDER BY seq", args).fetchall()]

    def records(
        self,
        kind: str,
        study: str | None = None,
        upto: int | None = None,
        subjects: Collection[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.LazyFrame:
        """Every event of ``kind`` (of ``study``, below offset ``upto``, of ``subjects``) as
        typed columns, in log order."""
        schema = segment_schema(kind)
        files = [str(self.folder / e.file) for e in self.entries(kind, study, upto)]
        if not files:
            frame = pl.LazyFrame(schema=schema)
        else:
            frame = pl.scan_parquet(
                files, schema=schema, missing_columns="insert", extra_columns="ignore"
            )
        if study is not None:
            frame = frame.filter(pl.col("study") == study)
        if upto is not None:
            frame = frame.filter(pl.col("offset") < upto)
        if subjects is not None:
            frame = frame.filter(among("subject_id", subjects))
        return frame if columns is None else frame.select(columns)

    def positions(self, upto_seq: int | None = None) -> dict[str, int]:
        """Per kind, the offset the next event will get (had, once entry ``upto_seq`` was
        appended)."""
        db = self._index()
        if db is None:
            return {}
        last = self._checked if upto_seq is None else min(upto_seq, self._checked)
        rows = db.execute(
            "SELECT topic, max(first_offset + count) FROM segments WHERE seq <= ? GROUP BY topic",
            (last,),
        ).fetchall()
        return dict(rows)

    def head(self) -> Head:
        self._index()
        return Head(self._checked, self._last_hash)

    def cut(self) -> tuple[dict[str, int], Head]:
        """Positions and the chain head read together: a lock's cut and its anchor."""
        with self._mutex:
            return self.positions(), self.head()

    def studies(self) -> list[str]:
        db = self._index()
        if db is None:
            return []
        marks = ",".join("?" * len(STUDY_KINDS))
        rows = db.execute(
            f"SELECT DISTINCT study FROM segments WHERE topic IN ({marks}) ORDER BY study",
            STUDY_KINDS,
        ).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
