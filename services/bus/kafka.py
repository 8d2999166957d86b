"""The Kafka implementation of the event bus (kafka-python): the producer side and set-up.

Producer: ``acks=all``, idempotent, events keyed ``study/subject_id`` so a subject's events
keep their order; event id, kind, schema version, study and subject travel in headers. Every
kafka-python error is translated through :data:`ERRORS` (kafka_errors.py) into ours:
a broker that does not answer is a retryable :class:`BusUnavailableError` (bounded attempts,
then a message that says what to check), anything else a final :class:`BusError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import polars as pl

import schemas
from services.bus.envelope import FRAME_SCHEMA, decode, encode, known_from_frame
from services.bus.errors import BusUnavailableError, MalformedEventError
from services.bus.kafka_config import KafkaConfig
from services.bus.kafka_consumer import Delivery, KafkaEventConsumer, Position
from services.bus.kafka_errors import ERRORS, bounded, translate, translated
from services.events import Event
from services.log.faults import crash_point
from services.log.segment import Batch, events_of

with warnings.catch_warnings():
    # kafka-python 3.0.12 loads its protocol schemas with deprecated importlib.resources calls
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.errors as kerr
    import kafka.record.util as krecord
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

log = logging.getLogger(__name__)

CHECK_CRCS = krecord.crc32c_c is not None
"""Verify record CRCs only with a C CRC-32C (the ``crc32c`` package): kafka-python's pure
Python one costs ~130 us per record, more than everything else the adjudicator does."""

IDENTIFIED = frozenset(c.kind for c in schemas.contracts().values() if c.id_field)


class AppliedPositions(Protocol):
    """What the adjudicator has applied (its state file); CLI writers wait on it."""

    def kafka_positions(self) -> dict[Position, int]: ...
    def heartbeat_age(self) -> float | None: ...


class KafkaBus:
    """An :class:`~services.bus.EventBus` on Kafka. Clients are created on first use."""

    def __init__(self, config: KafkaConfig, applied: AppliedPositions | None = None) -> None:
        self.config = config
        self.applied = applied
        self._producer: Any = None
        self._topics_ready = False
        self._written: dict[Position, int] = {}  # highest offset this process wrote
        self._recent: dict[tuple[str, str], list[tuple]] = {}  # (kind, study) -> frame rows

    # connection --------------------------------------------------------------------------
    def retrying(self, doing: str, action: Callable[[], Any]) -> Any:
        """Run ``action``; retry a BusUnavailableError a bounded number of times, then say so."""
        started, attempts = time.monotonic(), self.config.retries
        for attempt in range(1, attempts + 1):
            try:
                with translated(doing, self.config.where):
                    return bounded(action, 3 * self.config.timeout_s + 5, doing, self.config.where)
            except BusUnavailableError as exc:
                if attempt == attempts:
                    raise BusUnavailableError(
                        f"{exc}. Gave up after {attempts} attempt(s) over "
                        f"{time.monotonic() - started:.0f}s (TRACT_KAFKA_RETRIES, "
                        "TRACT_KAFKA_TIMEOUT_S). Nothing is lost: events already sent keep their "
                        "ids, so running the same command again is safe."
                    ) from exc
                log.warning("%s (attempt %d of %d); retrying", exc, attempt, attempts)
                _back_off(attempt)
        raise AssertionError("unreachable")

    def _producer_now(self) -> Any:
        if self._producer is None:
            timeout_ms = int(self.config.timeout_s * 1000)
            self._producer = self.retrying(
                "connecting a producer",
                lambda: KafkaProducer(
                    **self.config.client_options(),
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=50,  # flush() sends at once; a longer linger only batches bulk sends
                    batch_size=256 * 1024,
                    max_block_ms=timeout_ms,
                    delivery_timeout_ms=3 * timeout_ms,
                ),
            )
        return self._producer

    def admin(self) -> Any:
        return self.retrying(
            "connecting an admin client",
            lambda: KafkaAdminClient(**self.config.client_options()),
        )

    def ensure_topics(self) -> list[str]:
        """Create the topics of the topics file that do not exist yet; return the names this
        call created (another client may create some of them meanwhile: not an error)."""
        if self._topics_ready:
            return []
        admin = self.admin()
        created: list[str] = []
        try:
            existing = set(self.retrying("listing topics", admin.list_topics))
            missing = {t.name: t for t in self.config.topics if t.name not in existing}
            if missing:
                request = {
                    name: {
                        "num_partitions": t.partitions,
                        "replication_factor": self.config.replication_factor,
                    }
                    for name, t in missing.items()
                }

                def create() -> list[str]:
                    # Errors per topic rather than raised: another client (a second service
                    # starting, a broker auto-create) may have created some since the listing,
                    # and the broker still creates the others of the request.
                    answer = admin.create_topics(request, raise_errors=False)
                    made, refused = [], []
                    for topic in answer["topics"]:
                        error = kerr.for_code(topic["error_code"])
                        if error is kerr.NoError:
                            made.append(topic["name"])
                        elif error is not kerr.TopicAlreadyExistsError:
                            refused.append(error(f"creating topic {topic['name']}"))
                    if refused:
                        raise refused[0]
                    if made:
                        admin.wait_for_topics(made, timeout_ms=int(3000 * self.config.timeout_s))
                    return made

                created = self.retrying("creating topics", create)
        finally:
            admin.close()
        self._topics_ready = True
        return sorted(created)

    # publishing --------------------------------------------------------------------------
    def publish(self, events: Sequence[Event]) -> int:
        """Send events and wait for every acknowledgement; returns how many were sent."""
        return len(self.send(events))

    def append(self, batches: Sequence[Batch]) -> int:
        """Send frames as per-event records (Kafka keeps one record per event), all in one
        producer batch and one wait for the acknowledgements."""
        return self.publish([e for batch in batches for e in events_of(batch)])

    def send(self, events: Sequence[Event]) -> list[tuple[str, int, int]]:
        """Send events (acks=all); the (topic, partition, offset) each landed at, in order."""
        if not events:
            return []
        self.ensure_topics()
        producer = self._producer_now()
        landed: dict[int, tuple[str, int, int]] = {}
        records = [encode(e) for e in events]
        pending = list(range(len(events)))
        started, attempts = time.monotonic(), self.config.retries
        for attempt in range(1, attempts + 1):
            pending, last = self._send_once(producer, events, records, pending, landed)
            if not pending:
                break
            if attempt == attempts:
                raise BusUnavailableError(
                    f"publishing {len(pending)} of {len(events)} event(s) to Kafka at "
                    f"{self.config.where} failed after {attempts} attempt(s) over "
                    f"{time.monotonic() - started:.0f}s ({last}). Check that the broker is "
                    "running; re-running the same command is safe (event ids make repeats "
                    "harmless)."
                )
            log.warning("%d event(s) not acknowledged (%s); retrying", len(pending), last)
            _back_off(attempt)
        for topic, partition, offset in landed.values():
            if offset > self._written.get((topic, partition), -1):
                self._written[(topic, partition)] = offset
        for e, (_, value, _) in zip(events, records, strict=True):
            if e.kind in IDENTIFIED:
                row = (-1, e.event_id, e.study, e.subject_id, value.decode())
                self._recent.setdefault((e.kind, e.study), []).append(row)
        return [landed[i] for i in range(len(events))]

    def recent_identities(self, kind: str, study: str) -> pl.DataFrame:
        """Identities of the records this process sent (ingest judges identity against them
        too, since the adjudicator may not have applied them yet)."""
        rows = self._recent.get((kind, study), [])
        frame = pl.DataFrame(rows, schema=FRAME_SCHEMA, orient="row")
        return known_from_frame(frame, schemas.contract(kind))

    def _send_once(
        self,
        producer: Any,
        events: Sequence[Event],
        records: list[Any],
        indexes: list[int],
        landed: dict[int, tuple[str, int, int]],
    ) -> tuple[list[int], str]:
        """One attempt: send, flush, collect acknowledgements; the indexes that failed."""
        futures: list[tuple[int, str, Any]] = []
        failed: list[int] = []
        last = ""
        # a test kills a sender part-way; each record is flushed first, so the records before
        # the kill are on Kafka whatever the machine's load (a partial publish, deterministic)
        armed = os.environ.get("TRACT_CRASH_AT", "").startswith("kafka-record-sent")
        for i in indexes:
            key, value, headers = records[i]
            topic = self.config.topic(events[i].kind)
            try:
                futures.append(
                    (i, topic, producer.send(topic, value=value, key=key, headers=headers))
                )
                if armed:
                    producer.flush(timeout=self.config.timeout_s)
                    crash_point("kafka-record-sent")
            except kerr.KafkaError as exc:
                last = self._retryable(exc, topic)
                failed.append(i)
        with contextlib.suppress(kerr.KafkaError):
            producer.flush(timeout=3 * self.config.timeout_s)
        for i, topic, future in futures:
            try:
                meta = future.get(timeout=self.config.timeout_s)
                landed[i] = (meta.topic, meta.partition, meta.offset)
            except kerr.KafkaError as exc:
                last = self._retryable(exc, topic)
                failed.append(i)
        return failed, last

    def _retryable(self, exc: Exception, topic: str) -> str:
        """The message of a retryable send failure; a final one is raised."""
        error = translate(exc, f"publishing to {topic}", self.config.where)
        if not isinstance(error, BusUnavailableError):
            raise error from exc
        return str(error)

    # consuming ---------------------------------------------------------------------------
    def consumer(self, group: str, topics: Sequence[str]) -> KafkaEventConsumer:
        """A group consumer of the given event kinds, resuming from the group's commits."""
        return self.subscribe(group, topics)

    def subscribe(
        self,
        group: str,
        kinds: Sequence[str],
        on_assign: Callable[[list[Position]], dict[Position, int]] | None = None,
        max_records: int = 5000,
        instance: str | None = None,
    ) -> KafkaEventConsumer:
        """A group consumer; ``on_assign`` may name where to start each assigned partition.

        ``instance`` makes it a static member (KIP-345): restarted under the same id, it takes
        its partitions back at once instead of waiting for the killed member to time out."""
        self.ensure_topics()
        consumer = self.retrying(
            f"joining consumer group {group}",
            lambda: KafkaConsumer(
                **self.config.client_options(),
                group_id=group,
                group_instance_id=instance,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=6000,  # the smallest both test brokers accept
                heartbeat_interval_ms=1000,
                max_poll_records=max_records,
                fetch_max_wait_ms=200,
                check_crcs=CHECK_CRCS,
            ),
        )
        if not CHECK_CRCS:
            log.info("record CRCs not verified (no C CRC-32C); `pip install crc32c` enables it")
        return KafkaEventConsumer(
            self.config, consumer, group, tuple(kinds), on_assign, dead_letters=self.publish
        )

    def published_ids(self, starts: dict[Position, int], kinds: Sequence[str]) -> set[str]:
        """Event ids on ``kinds``' topics from ``starts`` (else 0) to the end of each partition."""
        events, _ = self.read_back(starts, kinds)
        return {e.event_id for e in events}

    def read_back(
        self, starts: dict[Position, int], kinds: Sequence[str]
    ) -> tuple[list[Event], dict[Position, int]]:
        """The events on ``kinds``' topics from ``starts`` (else 0) to the end of each
        partition, and where each partition ended (a malformed record is skipped).

        The end is where a fetch finds nothing more, not the broker's end offset alone (Tansu
        under-reports it after multi-record batches)."""
        consumer = self.retrying(
            "reading back outputs",
            lambda: KafkaConsumer(**self.config.client_options(), enable_auto_commit=False),
        )
        try:
            with translated("reading back outputs", self.config.where):
                partitions = [
                    TopicPartition(topic, p)
                    for topic in map(self.config.topic, kinds)
                    for p in sorted(consumer.partitions_for_topic(topic) or ())
                ]
                consumer.assign(partitions)
                for tp in partitions:
                    consumer.seek(tp, starts.get((tp.topic, tp.partition), 0))
                hint = consumer.end_offsets(partitions)
                found: list[Event] = []
                deadline = time.monotonic() + 10 * self.config.timeout_s
                while time.monotonic() < deadline:
                    batch = consumer.poll(timeout_ms=500)
                    for tp, records in batch.items():
                        kind = self.config.kind(tp.topic) or "?"
                        for r in records:
                            with contextlib.suppress(MalformedEventError):
                                found.append(decode(kind, r.value, r.headers or (), r.offset))
                    if not batch and all(consumer.position(tp) >= hint[tp] for tp in partitions):
                        ends = {
                            (tp.topic, tp.partition): consumer.position(tp) for tp in partitions
                        }
                        return found, ends
                raise BusUnavailableError(
                    f"reading back outputs from Kafka at {self.config.where} did not finish "
                    f"within {10 * self.config.timeout_s:.0f}s; check the broker"
                )
        finally:
            consumer.close()

    def end_offsets(self, kinds: Sequence[str]) -> dict[Position, int]:
        """The broker's end offset of every partition of ``kinds``' topics (a hint: Tansu
        under-reports them)."""
        consumer = self.retrying(
            "reading end offsets",
            lambda: KafkaConsumer(**self.config.client_options(), enable_auto_commit=False),
        )
        try:
            with translated("reading end offsets", self.config.where):
                tps = [
                    TopicPartition(topic, p)
                    for topic in map(self.config.topic, kinds)
                    for p in sorted(consumer.partitions_for_topic(topic) or ())
                ]
                ends = consumer.end_offsets(tps) if tps else {}
                return {(tp.topic, tp.partition): int(o) for tp, o in ends.items()}
        finally:
            consumer.close()

    def positions(self) -> dict[str, int]:
        """Per event kind, the sum of the broker's end offsets (a hint: Tansu under-reports
        them; locks use the adjudicator's applied positions instead)."""
        ends: dict[str, int] = {}
        for (topic, _), offset in self.end_offsets([t.kind for t in self.config.topics]).items():
            kind = self.config.kind(topic) or topic
            ends[kind] = ends.get(kind, 0) + offset
        return {t.kind: ends.get(t.kind, 0) for t in self.config.topics}

    # read-your-writes --------------------------------------------------------------------
    def await_applied(self, timeout_s: float | None = None) -> bool:
        """Wait until the adjudicator has applied everything this process published.

        Returns at once (False, with a warning) when its state shows no live service."""
        if not self._written or self.applied is None:
            return True
        wait = self.config.apply_wait_s if timeout_s is None else timeout_s
        if wait <= 0:
            return False
        deadline = time.monotonic() + wait
        while True:
            applied = self.applied.kafka_positions()
            behind = {tp: o for tp, o in self._written.items() if applied.get(tp, 0) <= o}
            if not behind:
                return True
            age = self.applied.heartbeat_age()
            if age is None or age > 15 or time.monotonic() > deadline:
                state = (
                    "is not running (no heartbeat in its state)"
                    if age is None or age > 15
                    else f"has not caught up within {wait:.0f}s"
                )
                log.warning(
                    "published to Kafka, but the adjudicator service %s: outcomes, conflicts and "
                    "reports show its state before these events until `tract adjudicator run` "
                    "applies them (%d partition(s) behind)",
                    state,
                    len(behind),
                )
                return False
            time.sleep(0.1)

    def close(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(kerr.KafkaError):
                self._producer.close(timeout=self.config.timeout_s)
            self._producer = None


def _back_off(attempt: int) -> None:
    """Wait before retry ``attempt`` + 1: 1 s, 2 s, 4 s, then 5 s."""
    time.sleep(min(2.0 ** (attempt - 1), 5.0))


__all__ = [
    "ERRORS",
    "Delivery",
    "KafkaBus",
    "KafkaEventConsumer",
    "translate",
]
