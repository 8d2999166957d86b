"""The event bus seam: one small protocol, two real implementations.

The embedded log (:class:`services.log.EventLog`, the default: columnar segments, hash-chained)
and the Kafka adapter both implement :class:`EventBus`. Above this package, events travel as
:class:`~services.events.Event` objects (decisions, locks) or as frames
(:class:`~services.log.segment.Batch`: a file's rows, dead letters).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from services.events import Event

if TYPE_CHECKING:
    from services.config import Settings
    from services.log.segment import Batch


class Consumer(Protocol):
    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Event]: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class EventBus(Protocol):
    def publish(self, events: Sequence[Event]) -> int:
        """Append events; an event id seen before is not appended again. Returns how many were new."""
        ...

    def append(self, batches: Sequence[Batch]) -> int:
        """Append frames of events, all or nothing where the log can promise it; returns how
        many events were new."""
        ...

    def positions(self) -> dict[str, int]:
        """Per topic, the offset the next event will get (the end of the log)."""
        ...

    def close(self) -> None: ...


def open_bus(settings: Settings) -> tuple[EventBus, Any]:
    """The embedded log the settings name, as the bus and the source the results are read from.

    (Kafka is opened by :func:`services.stream.open_kafka`: its source is the adjudicator
    service's state, which this package knows nothing of.)"""
    from services.bus.errors import BusError

    if settings.bus == "embedded":
        from services.log import EventLog
        from services.log.errors import NotALogError

        if (settings.home / "events.db").exists() and not (settings.home / "log").exists():
            raise NotALogError(
                f"{settings.home} was written by an earlier tract (events.db, a per-event "
                "SQLite log); this version keeps a columnar log in log/. Re-ingest the transfer "
                "files into a new home (the outcomes come out the same; event ids are new), or keep "
                "using the earlier version for this home"
            )
        log = EventLog(settings.home / "log")
        return log, log
    raise BusError(
        f"unknown bus {settings.bus!r}: use 'embedded' or kafka://HOST:PORT (--bus or TRACT_BUS)"
    )
