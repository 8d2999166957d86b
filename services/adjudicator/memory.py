"""The adjudicator service's working state in Polars: every applied event, by kind, in memory.

Why: the service recomputes the subjects each batch touches; reading their events back from
SQLite per batch would cost more than the rules. The frames are rebuilt from the applied-state
file on start (that file is the checkpoint), then grow by one chunk per batch.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import polars as pl

import schemas
from services.adjudicator.sqlite_log import EmbeddedLog
from services.adjudicator.state import EVIDENCE_KINDS, decode, empty_records
from services.bus.envelope import FRAME_SCHEMA, keep_text
from services.events import Event

SUBJECT_SCOPED = frozenset(
    {*EVIDENCE_KINDS, "committee_decision", "conflict_change", "outcome_change"}
)
"""Kinds whose events concern one subject; the others (lock, ingest_run, rejected_row) are
study-wide and never filtered by subject."""


class Frames:
    """Applied events per kind as chunks of :data:`FRAME_SCHEMA` frames."""

    def __init__(self) -> None:
        self._chunks: dict[str, list[pl.DataFrame]] = {}
        self.ends: dict[str, int] = {}

    @classmethod
    def load(cls, log: EmbeddedLog) -> Frames:
        frames = cls()
        for kind, end in EmbeddedLog.positions(log).items():
            frames._chunks[kind] = [log.frame(kind)]
            frames.ends[kind] = end
        return frames

    def append(self, events: Sequence[Event]) -> list[Event]:
        """Give each event the next offset of its kind, keep it, and return them offset."""
        placed: list[Event] = []
        rows: dict[str, list[tuple]] = {}
        for e in events:
            offset = self.ends.get(e.kind, 0)
            self.ends[e.kind] = offset + 1
            kept = keep_text(e, offset)
            placed.append(kept)
            rows.setdefault(e.kind, []).append(
                (offset, e.event_id, e.study, e.subject_id, kept.text)
            )
        for kind, batch in rows.items():
            chunks = self._chunks.setdefault(kind, [])
            chunks.append(pl.DataFrame(batch, schema=FRAME_SCHEMA, orient="row"))
            if len(chunks) > 32:
                self._chunks[kind] = [pl.concat(chunks)]
        return placed

    def frame(
        self,
        kind: str,
        study: str | None = None,
        subjects: Collection[str] | None = None,
        upto: int | None = None,
    ) -> pl.DataFrame:
        chunks = self._chunks.get(kind)
        if not chunks:
            return pl.DataFrame(schema=FRAME_SCHEMA)
        frame = chunks[0] if len(chunks) == 1 else pl.concat(chunks, rechunk=False)
        condition = pl.lit(True)
        if study is not None:
            condition &= pl.col("study") == study
        if subjects is not None and kind in SUBJECT_SCOPED:
            condition &= pl.col("subject_id").is_in(
                pl.Series(list(subjects), dtype=pl.String).implode()
            )
        if upto is not None:
            condition &= pl.col("offset") < upto
        return frame.filter(condition)

    def event_ids(self, kind: str) -> pl.Series:
        return self.frame(kind)["event_id"]

    def kinds(self) -> list[str]:
        return list(self._chunks)


class SubjectView:
    """An ``EventSource`` over :class:`Frames` that shows only some subjects' events (all of
    them when ``subjects`` is None): the rules then run on the touched subjects alone."""

    def __init__(self, frames: Frames, subjects: Collection[str] | None) -> None:
        self._frames, self._subjects = frames, subjects

    def frame(self, topic: str, study: str | None = None, upto: int | None = None) -> pl.DataFrame:
        return self._frames.frame(topic, study, self._subjects, upto)

    def positions(self) -> dict[str, int]:
        return dict(self._frames.ends)

    def records(
        self,
        kind: str,
        study: str | None = None,
        upto: int | None = None,
        subjects: Collection[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.LazyFrame:
        """Typed records (the :class:`~services.state.Records` protocol) of the view."""
        frame = self.frame(kind, study, upto)
        if subjects is not None and kind in SUBJECT_SCOPED:
            frame = frame.filter(pl.col("subject_id").is_in(list(subjects)))
        typed = empty_records(kind) if frame.is_empty() else decode(frame, schemas.contract(kind))
        return typed if columns is None else typed.select(columns)

    def studies(self) -> list[str]:
        return sorted(set(self._frames.frame("subject")["study"].to_list()))
