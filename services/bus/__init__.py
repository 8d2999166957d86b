"""The event bus seam: one small protocol, two real implementations.

``EmbeddedLog`` (SQLite in WAL mode, the default) and the Kafka adapter both implement
:class:`EventBus`. Everything above this package speaks only in :class:`~services.events.Event`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from services.events import Event

if TYPE_CHECKING:
    from services.config import Settings


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


def open_bus(settings: Settings) -> tuple[EventBus, Any]:
    """The bus the settings name, and the event source the adjudicator's results are read from."""
    from services.bus.errors import BusError

    if settings.bus == "embedded":
        from services.bus.embedded import EmbeddedLog

        log = EmbeddedLog(settings.home / "events.db")
        return log, log
    if settings.bus.startswith("kafka://"):
        from services.bus.kafka import open_kafka

        return open_kafka(settings)
    raise BusError(
        f"unknown bus {settings.bus!r}: use 'embedded' or kafka://HOST:PORT (--bus or TRACT_BUS)"
    )
