"""KafkaBus against real Kafka-protocol brokers (Tansu and noida-db, on loopback)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import schemas
from services.bus.kafka import KafkaBus
from services.bus.kafka_config import KafkaConfig
from services.config import Settings
from services.events import Event

from .samples import every_kind, sample_event

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaProducer

pytestmark = pytest.mark.slow


@pytest.fixture
def bus(broker, topic_factory: Callable[..., str], tmp_path: Path):
    settings = Settings.from_env(
        {}, home=tmp_path, bus=f"kafka://{broker.bootstrap}", kafka_prefix=topic_factory("b") + "."
    )
    bus = KafkaBus(KafkaConfig.from_settings(settings))
    yield bus
    bus.close()


def test_topics_another_client_created_meanwhile_are_not_an_error(
    bus: KafkaBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two services starting together both find the topics missing; the second to create
    them must go on (it used to stop with 'Topic ... already exists') and must not claim it
    created them. The race is staged on a real admin client of a real broker: its listing
    answers as it would have before the other client created the topics."""
    assert len(bus.ensure_topics()) == len(bus.config.topics)  # the first client creates all
    late = KafkaBus(bus.config)
    connect = late.admin

    def admin_that_listed_before_the_other_created_them() -> Any:
        admin = connect()
        admin.list_topics = lambda: []
        return admin

    monkeypatch.setattr(late, "admin", admin_that_listed_before_the_other_created_them)
    assert late.ensure_topics() == []  # it tried to create every one; none was new
    exam = sample_event("clinical_exam", 1, subject="S7")
    [(topic, _, offset)] = late.send([exam])
    assert topic == bus.config.topic("clinical_exam") and offset >= 0
    consumer = late.consumer("g-race-" + bus.config.adjudicator_group, ["clinical_exam"])
    try:
        assert [e.event_id for e in _drain(consumer, 1)] == [exam.event_id]
    finally:
        consumer.close()
        late.close()


def _drain(consumer, want: int, timeout: float = 30.0) -> list[Event]:
    got: list[Event] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += consumer.poll(max_records=500, timeout_s=0.5)
    return got


def test_every_kind_round_trips_through_a_consumer_group(bus: KafkaBus) -> None:
    created = bus.ensure_topics()
    assert set(created) == {t.name for t in bus.config.topics}
    assert bus.ensure_topics() == []  # idempotent (cached), and again with a fresh client:
    assert KafkaBus(bus.config).ensure_topics() == []
    admin = bus.admin()
    try:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics()}
    finally:
        admin.close()
    for spec in bus.config.topics:
        assert described[spec.name] == spec.partitions, spec

    sent = every_kind()
    ordered = [sample_event("clinical_exam", i, subject="S42") for i in range(20)]
    landed = bus.send(sent + ordered)
    assert [t for t, _, _ in landed] == [bus.config.topic(e.kind) for e in sent + ordered]
    assert len({p for _, p, _ in landed[len(sent) :]}) == 1  # one subject, one partition

    consumer = bus.consumer("g-" + bus.config.adjudicator_group, sorted(schemas.contracts()))
    try:
        got = _drain(consumer, len(sent) + len(ordered))
        consumer.commit()
    finally:
        consumer.close()
    assert sorted(got, key=lambda e: e.event_id) == sorted(sent + ordered, key=lambda e: e.event_id)
    exams = [e for e in got if e.subject_id == "S42"]
    assert [e.payload["record_version"] for e in exams] == [
        e.payload["record_version"] for e in ordered
    ]


def test_a_malformed_record_is_dead_lettered_and_the_consumer_goes_on(bus: KafkaBus) -> None:
    bus.ensure_topics()
    good = [sample_event("mri_read", i, subject=f"S{i}") for i in range(3)]
    bus.publish(good[:1])
    producer = KafkaProducer(bootstrap_servers=list(bus.config.bootstrap), acks="all")
    try:
        topic = bus.config.topic("mri_read")
        producer.send(topic, key=b"ST-KAFKA/S9", value=b"{not json", headers=[])
        producer.send(
            topic,
            key=b"ST-KAFKA/S9",
            value=b"{}",
            headers=[
                ("event_id", b"e1"),
                ("kind", b"mri_read"),
                ("schema_version", b"1"),
                ("study", b"ST-KAFKA"),
                ("subject_id", b"S9"),
            ],
        )
        producer.flush(timeout=20)
    finally:
        producer.close(timeout=10)
    bus.publish(good[1:])

    consumer = bus.consumer("g-dl-" + bus.config.adjudicator_group, ["mri_read"])
    try:
        got = _drain(consumer, 3)
    finally:
        consumer.close()
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in good)

    letters = bus.consumer("g-dlq-" + bus.config.adjudicator_group, ["rejected_row"])
    try:
        dead = _drain(letters, 2)
    finally:
        letters.close()
    reasons = sorted((d.payload["field"], d.payload["reason"]) for d in dead)
    assert reasons[0][0] == "headers" and "missing event_id" in reasons[0][1]
    assert reasons[1][0] == "read_id" and "required" in reasons[1][1]
    assert all(d.payload["file"].startswith(f"kafka:{topic}[") for d in dead)
