"""The embedded default: a durable, append-only event log in one SQLite file (WAL mode).

Offsets are per topic and dense. A batch is appended in one transaction, so a crash leaves
either the whole batch or none of it; event ids are unique per topic, so a batch published
again after a crash appends nothing twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl

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
CREATE TABLE IF NOT EXISTS consumer_positions (
    grp TEXT NOT NULL, topic TEXT NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic)
);
"""

FRAME_SCHEMA = pl.Schema(
    {
        "offset": pl.Int64(),
        "event_id": pl.String(),
        "study": pl.String(),
        "subject_id": pl.String(),
        "payload": pl.String(),
    }
)


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

    def read(self, topic: str, start: int = 0, limit: int = 500) -> list[Event]:
        rows = self._db.execute(
            'SELECT "offset", event_id, study, subject_id, schema_version, payload FROM events '
            'WHERE topic = ? AND "offset" >= ? ORDER BY "offset" LIMIT ?',
            (topic, start, limit),
        ).fetchall()
        return [_event(topic, row) for row in rows]

    def consumer(self, group: str, topics: Sequence[str]) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, group, tuple(topics))

    def committed(self, group: str) -> dict[str, int]:
        return dict(
            self._db.execute(
                "SELECT topic, next_offset FROM consumer_positions WHERE grp = ?", (group,)
            ).fetchall()
        )

    def _commit_positions(self, group: str, positions: dict[str, int]) -> None:
        self._db.executemany(
            "INSERT INTO consumer_positions VALUES (?, ?, ?) "
            "ON CONFLICT (grp, topic) DO UPDATE SET next_offset = excluded.next_offset",
            [(group, topic, offset) for topic, offset in positions.items()],
        )

    def close(self) -> None:
        self._db.close()


def _event(topic: str, row: tuple) -> Event:
    offset, event_id, study, subject_id, schema_version, payload = row
    return Event(topic, study, subject_id, event_id, json.loads(payload), schema_version, offset)


class EmbeddedConsumer:
    """Reads topics from the group's committed positions; ``commit`` stores what was polled."""

    def __init__(self, log: EmbeddedLog, group: str, topics: tuple[str, ...]) -> None:
        self._log, self._group, self._topics = log, group, topics
        committed = log.committed(group)
        self._next = {t: committed.get(t, 0) for t in topics}

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Event]:
        batch: list[Event] = []
        for topic in self._topics:
            events = self._log.read(topic, self._next[topic], max_records - len(batch))
            if events:
                self._next[topic] = events[-1].offset + 1  # type: ignore[operator]
                batch.extend(events)
            if len(batch) >= max_records:
                break
        return batch

    def commit(self) -> None:
        self._log._commit_positions(self._group, self._next)

    def close(self) -> None:
        """Nothing to release: positions live in the log itself."""
