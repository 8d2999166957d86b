"""The event bus seam: one small protocol, two real implementations.

``EmbeddedLog`` (SQLite in WAL mode, the default) and the Kafka adapter both implement
:class:`EventBus`. Everything above this package speaks only in :class:`~services.events.Event`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.events import Event


class Consumer(Protocol):
    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Event]: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class EventBus(Protocol):
    def publish(self, events: Sequence[Event]) -> int:
        """Append events; an event id seen before is not appended again. Returns how many were new."""
        ...

    def consumer(self, group: str, topics: Sequence[str]) -> Consumer:
        """A consumer that resumes from the group's committed positions."""
        ...

    def positions(self) -> dict[str, int]:
        """Per topic, the offset the next event will get (the end of the log)."""
        ...

    def close(self) -> None: ...
