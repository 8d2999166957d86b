"""The Kafka adjudicator service's applied events: a per-event log in one SQLite file (WAL mode).

(It was the embedded default before the columnar log; the Kafka service's state file keeps it.)

Offsets are per topic and dense. A batch is appended in one transaction, so a crash leaves
either the whole batch or none of it; event ids are unique per topic, so a batch published
again after a crash appends nothing twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import polars as pl

import schemas
from services.adjudicator.state import decode, empty_records
from services.bus.envelope import FRAME_SCHEMA
from services.bus.errors import BusError
from services.events import Event, utc_now

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    topic TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    study TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    payload TEXT NOT NULL,
    appended_at TEXT NOT NULL,
    PRIMARY KEY (topic, "offset")
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_id ON events (topic, event_id);
CREATE INDEX IF NOT EXISTS events_by_study ON events (topic, study, "offset");
CREATE TABLE IF NOT EXISTS topic_ends (topic TEXT PRIMARY KEY, next_offset INTEGER NOT NULL);
"""


class EmbeddedLog:
    """An :class:`~services.bus.EventBus` on a local SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            # Wait for other processes' locks before anything else. Switching to WAL can be
            # refused at once while another connection has the file open, so it is only done
            # once, when the file is new (the mode then sticks to the file).
            self._db.execute("PRAGMA busy_timeout=30000")
            if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise BusError(f"cannot open the event log {self.path}: {exc}") from exc

    def publish(self, events: Sequence[Event]) -> int:
        appended = 0
        now = utc_now()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            ends: dict[str, int] = {}
            for event in events:
                topic = event.topic
                if topic not in ends:
                    row = db.execute(
                        "SELECT next_offset FROM topic_ends WHERE topic = ?", (topic,)
                    ).fetchone()
                    ends[topic] = row[0] if row else 0
                cursor = db.execute(
                    "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        topic,
                        ends[topic],
                        event.event_id,
                        event.study,
                        event.subject_id,
                        event.schema_version,
                        event.value(),
                        now,
                    ),
                )
                if cursor.rowcount == 1:
                    ends[topic] += 1
                    appended += 1
            db.executemany(
                "INSERT INTO topic_ends VALUES (?, ?) "
                "ON CONFLICT (topic) DO UPDATE SET next_offset = excluded.next_offset",
                list(ends.items()),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return appended

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the log's writer lock across processes: a check-then-publish (ingest identity)
        must not interleave with another one, or two contents could both pass as new."""
        with open(self.path.with_name(self.path.name + ".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def positions(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT topic, next_offset FROM topic_ends").fetchall())

    def frame(self, topic: str, study: str | None = None, upto: int | None = None) -> pl.DataFrame:
        """A topic's events (optionally one study's, below offset ``upto``) as a frame."""
        sql = 'SELECT "offset", event_id, study, subject_id, payload FROM events WHERE topic = ?'
        args: list[object] = [topic]
        if study is not None:
            sql += " AND study = ?"
            args.append(study)
        if upto is not None:
            sql += ' AND "offset" < ?'
            args.append(upto)
        rows = self._db.execute(sql + ' ORDER BY "offset"', args).fetchall()
        return pl.DataFrame(rows, schema=FRAME_SCHEMA, orient="row")

    def records(
        self,
        kind: str,
        study: str | None = None,
        upto: int | None = None,
        subjects: Collection[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.LazyFrame:
        """Typed records of a kind (the :class:`~services.state.Records` protocol)."""
        frame = self.frame(kind, study, upto)
        if subjects is not None:
            frame = frame.filter(pl.col("subject_id").is_in(list(subjects)))
        if frame.is_empty():
            typed = empty_records(kind).with_columns(study=pl.lit(None, pl.String))
        else:
            decoded = decode(frame, schemas.contract(kind)).collect()
            typed = pl.concat([decoded, frame.select("study")], how="horizontal").lazy()
        return typed if columns is None else typed.select(columns)

    def identity_index(self, kind: str, study: str) -> pl.DataFrame:
        from services.ingest.service import known_from_frame

        return known_from_frame(self.frame(kind, study), schemas.contract(kind))

    def studies(self) -> list[str]:
        rows = self._db.execute(
            "SELECT DISTINCT study FROM events WHERE topic IN ('subject', 'committee_decision') "
            "ORDER BY study"
        ).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        self._db.close()
