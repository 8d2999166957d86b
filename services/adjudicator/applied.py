"""The adjudicator service's applied state: what it applied, from where, and what it still owes.

One SQLite file in the embedded log's format (so it is an ``EventSource`` the CLI reads in
Kafka mode: ``outcomes``, ``conflicts``, ``report`` and ``lock`` see exactly what the service
applied) plus four tables, all written in the same transaction as the events:

- ``kafka_applied``: per Kafka partition, the next offset to apply. Restarts resume here, and
  a lock's cut is these positions, read together with the log's own ends.
- ``identities``: record id + version -> content hash, to refuse conflicting duplicates that
  raced past ingest.
- ``outbox``: outputs written here but not yet acknowledged by Kafka (crash window).
- ``output_ends``: where the outputs had reached on Kafka, to find out after a crash which
  outbox events made it.
- ``dirty``: subjects applied whose outcome changes are not published yet (a bulk load
  publishes once caught up), so a restart still publishes them.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from services.adjudicator.sqlite_log import EmbeddedLog
from services.events import Event, utc_now

Position = tuple[str, int]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kafka_applied (
    topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, part)
);
CREATE TABLE IF NOT EXISTS identities (
    kind TEXT NOT NULL, study TEXT NOT NULL, record_id TEXT NOT NULL, version INTEGER NOT NULL,
    content_hash TEXT NOT NULL, event_id TEXT NOT NULL,
    PRIMARY KEY (kind, study, record_id, version)
);
CREATE TABLE IF NOT EXISTS outbox (topic TEXT NOT NULL, "offset" INTEGER NOT NULL,
    PRIMARY KEY (topic, "offset"));
CREATE TABLE IF NOT EXISTS output_ends (
    topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, part)
);
CREATE TABLE IF NOT EXISTS dirty (study TEXT NOT NULL, subject_id TEXT);
CREATE TABLE IF NOT EXISTS heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1), beat REAL NOT NULL, pid INTEGER, host TEXT
);
"""

Identity = tuple[str, str, str, int, str, str]  # kind, study, record_id, version, hash, event_id


class AppliedLog(EmbeddedLog):
    """The service writes it; every other process only reads it."""

    @classmethod
    def at(cls, home: Path | str) -> AppliedLog:
        return cls(Path(home) / "adjudicator" / "state.db")

    def __init__(self, path: Path | str) -> None:
        super().__init__(path)
        self._db.executescript(_SCHEMA)

    # reads ---------------------------------------------------------------------------------
    def kafka_positions(self) -> dict[Position, int]:
        rows = self._db.execute("SELECT topic, part, next_offset FROM kafka_applied").fetchall()
        return {(t, p): o for t, p, o in rows}

    def positions(self) -> dict[str, int]:
        """The cut a lock records: the log's ends per kind and, read in the same transaction,
        the Kafka offsets they were applied up to (``kafka/<topic>/<partition>``)."""
        db = self._db
        db.execute("BEGIN")
        try:
            ends = dict(db.execute("SELECT topic, next_offset FROM topic_ends").fetchall())
            applied = db.execute("SELECT topic, part, next_offset FROM kafka_applied").fetchall()
        finally:
            db.execute("COMMIT")
        return ends | {f"kafka/{t}/{p}": o for t, p, o in sorted(applied)}

    def heartbeat_age(self) -> float | None:
        """Seconds since the service last reported alive, or None if it never ran here."""
        row = self._db.execute("SELECT beat FROM heartbeat WHERE id = 1").fetchone()
        return None if row is None else max(0.0, time.time() - row[0])

    def identities(self) -> Iterable[Identity]:
        return self._db.execute(
            "SELECT kind, study, record_id, version, content_hash, event_id FROM identities"
        )

    def outbox(self) -> list[Event]:
        rows = self._db.execute(
            'SELECT e.topic, e."offset", e.event_id, e.study, e.subject_id, e.schema_version, '
            'e.payload FROM outbox o JOIN events e ON e.topic = o.topic AND e."offset" = o."offset" '
            'ORDER BY e.topic, e."offset"'
        ).fetchall()
        import json

        return [Event(r[0], r[3], r[4], r[2], json.loads(r[6]), r[5], r[1]) for r in rows]

    def dirty(self) -> dict[str, set[str] | None]:
        """Subjects applied but whose outcome changes are not published yet."""
        found: dict[str, set[str] | None] = {}
        for study, subject in self._db.execute("SELECT study, subject_id FROM dirty"):
            if subject is None:
                found[study] = None
            elif found.get(study, set()) is not None:
                found.setdefault(study, set()).add(subject)  # type: ignore[union-attr]
        return found

    def output_ends(self) -> dict[Position, int]:
        rows = self._db.execute("SELECT topic, part, next_offset FROM output_ends").fetchall()
        return {(t, p): o for t, p, o in rows}

    # writes (the service only) -------------------------------------------------------------
    def apply(
        self,
        events: Sequence[Event],
        applied: dict[Position, int],
        identities: Sequence[Identity],
        outbox: Sequence[Event],
        dirty: dict[str, set[str] | None] | None = None,
    ) -> None:
        """In one transaction: append ``events`` (their offsets already assigned), move the
        applied Kafka positions, record identities, queue ``outbox`` for publishing, and keep
        the subjects whose changes are not published yet (``dirty``; None = a whole study)."""
        now = utc_now()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.kind,
                        e.offset,
                        e.event_id,
                        e.study,
                        e.subject_id,
                        e.schema_version,
                        e.value(),
                        now,
                    )
                    for e in events
                ],
            )
            ends: dict[str, int] = {}
            for e in events:
                ends[e.kind] = max(ends.get(e.kind, 0), e.offset + 1)  # type: ignore[operator]
            db.executemany(
                "INSERT INTO topic_ends VALUES (?, ?) ON CONFLICT (topic) "
                "DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
                list(ends.items()),
            )
            db.executemany(
                "INSERT INTO kafka_applied VALUES (?, ?, ?) ON CONFLICT (topic, part) "
                "DO UPDATE SET next_offset = excluded.next_offset",
                [(t, p, o) for (t, p), o in applied.items()],
            )
            db.executemany("INSERT INTO identities VALUES (?, ?, ?, ?, ?, ?)", identities)
            db.executemany("INSERT INTO outbox VALUES (?, ?)", [(e.kind, e.offset) for e in outbox])
            db.execute("DELETE FROM dirty")
            db.executemany(
                "INSERT INTO dirty VALUES (?, ?)",
                [
                    (study, subject)
                    for study, subjects in (dirty or {}).items()
                    for subject in ([None] if subjects is None else sorted(subjects))
                ],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def sent(self, outbox: Sequence[Event], ends: dict[Position, int]) -> None:
        """The outbox events are acknowledged by Kafka, which now reaches ``ends``."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                'DELETE FROM outbox WHERE topic = ? AND "offset" = ?',
                [(e.kind, e.offset) for e in outbox],
            )
            db.executemany(
                "INSERT INTO output_ends VALUES (?, ?, ?) ON CONFLICT (topic, part) "
                "DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
                [(t, p, o) for (t, p), o in ends.items()],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def beat(self) -> None:
        self._db.execute(
            "INSERT INTO heartbeat VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "beat = excluded.beat, pid = excluded.pid, host = excluded.host",
            (time.time(), os.getpid(), socket.gethostname()),
        )
