"""The Kafka adjudicator's applied state: a columnar, hash-chained event log of its own, with
the service's bookkeeping committed in the same transaction as each batch.

    <home>/adjudicator/log/          an EventLog (services/log): every applied event as Parquet
                                     segments (one per kind and study per batch), hash-chained;
                                     ``tract verify`` walks it like the embedded log
    <home>/adjudicator/state/        the maintained outcomes over that log (services/state)
    <home>/adjudicator/service.lock  one service per home

The log's index holds the service's tables, written with the segments of a batch (one SQLite
transaction, through ``EventLog.append(..., extra=...)``):

- ``kafka_applied``: per input partition, the next offset to apply. Restarts resume here; a
  lock's cut is these positions, read in one transaction with the log's own ends and head.
- ``identities``: record id + version -> content hash, to refuse conflicting duplicates that
  raced past ingest.
- ``outbox``: outputs in the log but not yet acknowledged by Kafka (a crash window).
- ``output_ends``: where the outputs had reached on Kafka, to learn after a crash which of
  the outbox made it.
- ``dirty``: subjects applied whose outcome changes are not published yet (a bulk load
  publishes once caught up), so a restart still publishes them.
- ``rebuild``: while the service rebuilds a new state from the topics, the end offsets the
  input partitions had when it began.
- ``heartbeat``: when the service last said it was alive.

Only the service writes here (:class:`AppliedLog`); every other process reads through
:class:`~services.stream.view.AppliedView`.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from services.bus.kafka_config import OUTPUT_KINDS
from services.events import Event
from services.log import Batch, EventLog, Head
from services.log.errors import LogDamagedError
from services.log.eventlog import INDEX
from services.log.segment import events_of
from services.stream.frames import batches_of

Position = tuple[str, int]
Identity = tuple[str, str, str, int, str, str]  # kind, study, record_id, version, hash, event_id
ROOT, LOG, STATE = "adjudicator", "log", "state"

_TABLES = """
CREATE TABLE IF NOT EXISTS kafka_applied (
    topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, part)
);
CREATE TABLE IF NOT EXISTS identities (
    kind TEXT NOT NULL, study TEXT NOT NULL, record_id TEXT NOT NULL, version INTEGER NOT NULL,
    content_hash TEXT NOT NULL, event_id TEXT NOT NULL,
    PRIMARY KEY (kind, study, record_id, version)
);
CREATE TABLE IF NOT EXISTS outbox (
    kind TEXT NOT NULL, event_id TEXT NOT NULL, study TEXT NOT NULL, subject_id TEXT NOT NULL,
    schema_version INTEGER NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY (kind, event_id)
);
CREATE TABLE IF NOT EXISTS output_ends (
    topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, part)
);
CREATE TABLE IF NOT EXISTS dirty (study TEXT NOT NULL, subject_id TEXT);
CREATE TABLE IF NOT EXISTS rebuild (
    topic TEXT NOT NULL, part INTEGER NOT NULL, end_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, part)
);
CREATE TABLE IF NOT EXISTS heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1), beat REAL NOT NULL, pid INTEGER, host TEXT
);
"""

Write = Callable[[sqlite3.Connection], None]


def applied_root(home: Path | str) -> Path:
    """Where the service of ``home`` keeps its applied state (``tract verify`` walks it)."""
    return Path(home) / ROOT


class AppliedLog(EventLog):
    """The service's applied events and bookkeeping (the service is its only writer)."""

    TABLES = _TABLES

    def __init__(self, folder: Path | str) -> None:
        super().__init__(folder)
        self.root = self.folder.parent
        self.state_folder = self.root / STATE

    @classmethod
    def at(cls, home: Path | str) -> AppliedLog:
        return cls(applied_root(home) / LOG)

    # reads ---------------------------------------------------------------------------------
    def _rows(self, sql: str, args: Sequence[object] = ()) -> list[tuple]:
        """Rows of the service's tables; none while the log does not exist yet."""
        db = self._index()
        if db is None:
            return []
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise LogDamagedError(
                f"{self.folder / INDEX}: the adjudicator's bookkeeping cannot be read ({exc}). "
                f"Stop the service, move {self.root} aside and start it again: it rebuilds its "
                "state from the Kafka topics"
            ) from None

    def kafka_positions(self) -> dict[Position, int]:
        rows = self._rows("SELECT topic, part, next_offset FROM kafka_applied")
        return {(t, p): o for t, p, o in rows}

    def cut(self) -> tuple[dict[str, int], Head]:
        """A lock's cut: the log's ends per kind and, read in the same transaction, the Kafka
        offsets they were applied up to (``kafka/<topic>/<partition>``), with the chain head."""
        with self._mutex:
            db = self._index()
            if db is None:
                return {}, Head(0, self._last_hash)
            db.execute("BEGIN")
            try:
                ends = self.positions()
                head = self.head()
                applied = self._rows("SELECT topic, part, next_offset FROM kafka_applied")
            finally:
                db.execute("COMMIT")
        return ends | {f"kafka/{t}/{p}": o for t, p, o in sorted(applied)}, head

    def heartbeat_age(self) -> float | None:
        """Seconds since the service last reported alive, or None if it never ran here."""
        rows = self._rows("SELECT beat FROM heartbeat WHERE id = 1")
        return None if not rows else max(0.0, time.time() - rows[0][0])

    def identities(self) -> Iterable[Identity]:
        return self._rows(
            "SELECT kind, study, record_id, version, content_hash, event_id FROM identities"
        )

    def outbox(self) -> list[Event]:
        rows = self._rows(
            "SELECT kind, study, subject_id, event_id, payload, schema_version FROM outbox "
            "ORDER BY rowid"
        )
        return [Event(k, st, su, e, json.loads(p), v) for k, st, su, e, p, v in rows]

    def dirty(self) -> dict[str, set[str] | None]:
        """Subjects applied but whose outcome changes are not published yet (None: all)."""
        found: dict[str, set[str] | None] = {}
        for study, subject in self._rows("SELECT study, subject_id FROM dirty"):
            if subject is None:
                found[study] = None
            elif found.get(study, set()) is not None:
                found.setdefault(study, set()).add(subject)  # type: ignore[union-attr]
        return found

    def output_ends(self) -> dict[Position, int]:
        rows = self._rows("SELECT topic, part, next_offset FROM output_ends")
        return {(t, p): o for t, p, o in rows}

    def rebuild_targets(self) -> dict[Position, int]:
        """While a rebuild runs: the input partitions' end offsets when it began."""
        rows = self._rows("SELECT topic, part, end_offset FROM rebuild")
        return {(t, p): o for t, p, o in rows}

    # writes (the service only) -------------------------------------------------------------
    def create(self) -> None:
        """Create the log (and the service's tables) if it does not exist yet."""
        with self.exclusive():
            self._index(create=True)

    def _write(self, write: Write) -> None:
        """One transaction on the service's tables alone (no segment)."""
        with self.exclusive():
            db = self._index(create=True)
            assert db is not None
            db.execute("BEGIN IMMEDIATE")
            try:
                write(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def apply(
        self,
        events: Sequence[Event],
        applied: dict[Position, int] | None = None,
        identities: Sequence[Identity] = (),
        outbox: Sequence[Event] = (),
        dirty: dict[str, set[str] | None] | None = None,
    ) -> int:
        """In one transaction: append ``events`` (one segment per kind and study; the service
        vouches that none was applied before), move the applied Kafka positions, record
        identities, queue ``outbox`` for Kafka (its outputs are queued anyway) and keep the
        subjects whose changes are not published yet (``dirty``: None keeps them as they are;
        a study mapped to None is the whole study)."""

        def extra(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO kafka_applied VALUES (?, ?, ?) ON CONFLICT (topic, part) "
                "DO UPDATE SET next_offset = excluded.next_offset",
                [(t, p, o) for (t, p), o in (applied or {}).items()],
            )
            db.executemany("INSERT OR IGNORE INTO identities VALUES (?, ?, ?, ?, ?, ?)", identities)
            _queue(db, outbox)
            if dirty is not None:
                db.execute("DELETE FROM dirty")
                db.executemany(
                    "INSERT INTO dirty VALUES (?, ?)",
                    [
                        (study, subject)
                        for study, subjects in dirty.items()
                        for subject in ([None] if subjects is None else sorted(subjects))
                    ],
                )

        return self.append(batches_of(events, new=True), extra)

    def append(self, batches: Sequence[Batch], extra: Write | None = None) -> int:
        """Append batches; the events of the service's output kinds that the log did not hold
        yet (the maintained state's conflict changes, the outcome changes) join the outbox in
        the same commit. Repeats are dropped before queueing: an output already in the log was
        queued (and maybe sent) when it was first appended, so it is never queued twice."""
        with self.exclusive():  # re-entrant: no other append between the check and the commit
            batches = [_vouched(self, b) if b.kind in OUTPUT_KINDS else b for b in batches]
            outputs = [
                e for b in batches if b.kind in OUTPUT_KINDS and len(b) for e in events_of(b)
            ]
            if not outputs:
                return super().append(batches, extra)

            def queued(db: sqlite3.Connection) -> None:
                _queue(db, outputs)
                if extra is not None:
                    extra(db)

            return super().append(batches, queued)

    def restore(self, events: Sequence[Event], ends: dict[Position, int]) -> int:
        """Outputs read back from Kafka into a new state (they are on Kafka already: not
        queued)."""
        return super().append(batches_of(events), lambda db: _output_ends(db, ends))

    def sent(self, outbox: Sequence[Event], ends: dict[Position, int]) -> None:
        """The outbox events are acknowledged by Kafka, whose output partitions reach ``ends``."""

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "DELETE FROM outbox WHERE kind = ? AND event_id = ?",
                [(e.kind, e.event_id) for e in outbox],
            )
            _output_ends(db, ends)

        self._write(write)

    def begin_rebuild(self, ends: dict[Position, int]) -> None:
        self._write(
            lambda db: db.executemany(
                "INSERT OR REPLACE INTO rebuild VALUES (?, ?, ?)",
                [(t, p, o) for (t, p), o in ends.items()],
            )
        )

    def end_rebuild(self) -> None:
        self._write(lambda db: db.execute("DELETE FROM rebuild"))

    def beat(self) -> None:
        self._write(
            lambda db: db.execute(
                "INSERT INTO heartbeat VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "beat = excluded.beat, pid = excluded.pid, host = excluded.host",
                (time.time(), os.getpid(), socket.gethostname()),
            )
        )


def _vouched(log: AppliedLog, batch: Batch) -> Batch:
    """The batch without the events the log holds already, vouched new (so the log does not
    look twice)."""
    return batch if batch.new else Batch(batch.kind, batch.study, log.new_events(batch), True)


def _queue(db: sqlite3.Connection, outbox: Sequence[Event]) -> None:
    db.executemany(
        "INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?, ?)",
        [(e.kind, e.event_id, e.study, e.subject_id, e.schema_version, e.value()) for e in outbox],
    )


def _output_ends(db: sqlite3.Connection, ends: dict[Position, int]) -> None:
    db.executemany(
        "INSERT INTO output_ends VALUES (?, ?, ?) ON CONFLICT (topic, part) "
        "DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
        [(t, p, o) for (t, p), o in ends.items()],
    )
