"""What locking reads and writes, handed in by the platform: records, outcomes, a store and
a way to publish. The lock never sees the platform itself, so data walks one way
(ingest -> log -> state -> lock)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from services.adjudicator.engine import Adjudication
from services.adjudicator.ruleset import RuleSet
from services.events import Event
from services.state.records import Cut, Records
from services.store import ObjectStore

Anchor = dict[str, Any]
"""Where the log's hash chain stood at a cut: ``{"seq": int, "hash": str}`` (empty when the
log keeps no chain)."""


@dataclass(frozen=True)
class LockSources:
    records: Records
    """Typed records of every kind (the embedded log, or the Kafka adjudicator's state)."""
    store: ObjectStore
    publish: Callable[[Sequence[Event]], int]
    rules: RuleSet
    conflicts: Callable[[str, Cut | None], pl.DataFrame]
    """The study's conflicts at a cut (None: now), from the maintained state when it is the
    study at that cut: what the checks before a lock read."""
    computed: Callable[[str, Cut | None], Adjudication]
    """The same, always computed from the log's records: what a lock or a dated snapshot
    freezes. The maintained state is files in the home that no chain covers; the log's
    segments are verified (``integrity``)."""
    freeze: Callable[[], tuple[Cut, Anchor]]
    """The log's positions and chain head, read together."""
    integrity: Callable[[], list[str]]
    """What does not match in the log's chain and segments (``tract verify``'s findings):
    empty when the log is intact."""
    home: Path
    exclusive: Callable[[], AbstractContextManager[Any]] = field(default=contextlib.nullcontext)
    """The log's writer lock (a check-then-publish must not interleave with another)."""

    def lock_events(self, study: str) -> pl.DataFrame:
        """The study's lock, claim and unlock events in log order."""
        return self.records.records("lock", study).sort("offset").collect()
