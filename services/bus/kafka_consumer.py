"""The consumer side of the Kafka bus: a consumer-group member that yields events, or
deliveries with their positions and, for a malformed record, the reason it is not an event.

It is handed the connection settings and a way to publish dead letters, never the bus that
made it (:mod:`services.bus.kafka` imports this module, not the other way round)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.bus.envelope import dead_letter, decode
from services.bus.errors import MalformedEventError
from services.bus.kafka_config import DEAD_LETTER_KIND as DEAD
from services.bus.kafka_config import KafkaConfig
from services.bus.kafka_errors import translated
from services.events import Event

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.errors as kerr
    from kafka import ConsumerRebalanceListener, OffsetAndMetadata, TopicPartition

log = logging.getLogger(__name__)

Position = tuple[str, int]  # (Kafka topic, partition)


@dataclass(frozen=True)
class Delivery:
    """One record as read: its position, and the event in it or why it is not one."""

    kind: str
    topic: str
    partition: int
    offset: int
    event: Event | None
    problem: MalformedEventError | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    def dead_letter(self) -> Event:
        assert self.problem is not None
        return dead_letter(
            self.kind,
            self.topic,
            self.partition,
            self.offset,
            self.value,
            self.headers,
            self.problem,
        )


class KafkaEventConsumer:
    """A consumer-group member over event topics; ``poll`` for events, ``deliveries`` for
    positions and malformed records too."""

    def __init__(
        self,
        config: KafkaConfig,
        consumer: Any,
        group: str,
        kinds: tuple[str, ...],
        on_assign: Callable[[list[Position]], dict[Position, int]] | None,
        dead_letters: Callable[[Sequence[Event]], Any],
    ) -> None:
        self.config, self._consumer, self.group = config, consumer, group
        self._dead_letters = dead_letters
        self.assigned: list[Position] = []
        outer = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                outer.assigned = []

            def on_partitions_assigned(self, assigned: Any) -> None:
                outer.assigned = sorted((tp.topic, tp.partition) for tp in assigned)
                starts = on_assign(outer.assigned) if on_assign else {}
                for tp in assigned:
                    start = starts.get((tp.topic, tp.partition))
                    if start is not None:
                        consumer.seek(tp, start)
                    elif on_assign is not None:
                        consumer.seek_to_beginning(tp)

        topics = [config.topic(k) for k in kinds]
        with translated(f"subscribing to {', '.join(topics)}", config.where):
            consumer.subscribe(topics, listener=Listener())

    def deliveries(self, max_records: int = 5000, timeout_s: float = 1.0) -> list[Delivery]:
        with translated(f"polling as group {self.group}", self.config.where):
            batch = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        found: list[Delivery] = []
        for tp, records in batch.items():
            kind = self.config.kind(tp.topic) or "?"
            for r in records:
                headers = tuple(r.headers or ())
                try:
                    event = decode(kind, r.value, headers, r.offset)
                    found.append(Delivery(kind, tp.topic, tp.partition, r.offset, event))
                except MalformedEventError as problem:
                    found.append(
                        Delivery(
                            kind, tp.topic, tp.partition, r.offset, None, problem, r.value, headers
                        )
                    )
        return found

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Event]:
        """Events; a malformed record is dead-lettered with its reason and skipped."""
        deliveries = self.deliveries(max_records, timeout_s)
        letters = [d.dead_letter() for d in deliveries if d.event is None and d.kind != DEAD]
        for d in deliveries:
            if d.event is None:  # a bad record on the dead-letter topic itself is only logged
                note = "dead-lettered" if d.kind != DEAD else "skipped"
                log.warning("%s %s[%d]@%d: %s", note, d.topic, d.partition, d.offset, d.problem)
        if letters:
            self._dead_letters(letters)
        return [d.event for d in deliveries if d.event is not None]

    def commit(self, positions: dict[Position, int] | None = None) -> None:
        """Commit what was polled, or exactly ``positions`` (next offset per partition)."""
        offsets = (
            None
            if positions is None
            else {
                TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                for (t, p), o in positions.items()
            }
        )
        with translated(f"committing offsets of group {self.group}", self.config.where):
            self._consumer.commit(offsets)

    def close(self) -> None:
        with contextlib.suppress(kerr.KafkaError):
            self._consumer.close()
