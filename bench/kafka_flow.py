"""Benchmark: events/s from transfer files to outcomes, through Kafka and through the embedded
log, against the raw kafka-python produce + consume rate measured in the same run.

    .venv/bin/python bench/kafka_flow.py [--subjects 2000] [--bootstrap HOST:PORT]
                                         [--broker tansu|noida]

Without --bootstrap it starts a broker on loopback (tests/servers.py). Three measurements on
the same generated trial (services/demo/synthetic.py, about 30 events per subject):

- raw: the trial's encoded events (same keys, values, headers) produced with the platform's
  producer settings, then consumed by a group consumer with its consumer settings; the
  ceiling is N / (produce time + consume time), the rate of one client doing both;
- kafka: ``Platform.ingest`` of the six files publishing to Kafka while ``tract adjudicator
  run`` (a separate process) applies them, from the first byte read until every event is
  applied and every outcome change is acknowledged by the broker;
- embedded: ``Platform.ingest`` into the embedded log (validation, identity, one whole-study
  adjudication of conflicts);
- demo: the demo trial's six files through Kafka to settled outcomes, in seconds.

Targets: kafka / raw >= 0.5; the demo trial's files become outcomes in under 45 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer

from services.adjudicator.state import EVIDENCE_KINDS  # noqa: E402 (after the path set-up)

STUDY = "SYN"


def trial_events(files: dict[str, Path], home: Path) -> list:
    """The events ingest would publish for these files (from an embedded run)."""
    from services.log.segment import Batch, events_of
    from services.platform import Platform

    platform = Platform.embedded(home)
    platform.ingest(STUDY, list(files.values()))
    return [
        event
        for kind in EVIDENCE_KINDS
        for event in events_of(Batch(kind, STUDY, platform.source.records(kind, STUDY).collect()))
    ]


def raw_rates(bootstrap: str, events: list, prefix: str) -> tuple[float, float]:
    """Seconds to produce and to consume the encoded events with plain kafka-python."""
    from services.bus.envelope import encode
    from services.bus.kafka import CHECK_CRCS

    topic = f"{prefix}raw"
    records = [encode(e) for e in events]
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=50,
        batch_size=256 * 1024,
    )
    started = time.perf_counter()
    futures = [producer.send(topic, value=v, key=k, headers=h) for k, v, h in records]
    producer.flush()
    for f in futures:
        f.get()
    produce = time.perf_counter() - started
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{prefix}raw-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_poll_records=5000,
        fetch_max_wait_ms=200,
        check_crcs=CHECK_CRCS,
    )
    got, first = 0, None
    while got < len(records):
        batch = consumer.poll(timeout_ms=500)
        if batch and first is None:
            first = time.perf_counter()  # the group join is not consumption
        got += sum(len(r) for r in batch.values())
    consume = time.perf_counter() - (first or time.perf_counter())
    consumer.commit()
    consumer.close()
    return produce, consume


def settled(state, expected: int) -> bool:
    """Every evidence event applied, the outcomes adjudicated and every output on Kafka."""
    from services.adjudicator.ruleset import load_ruleset

    counts = state.positions()
    return (
        sum(counts.get(k, 0) for k in EVIDENCE_KINDS) >= expected
        and not state.rebuild_targets()
        and not state.dirty()
        and not state.outbox()
        and state.maintained_state(load_ruleset()).behind() == 0
    )


def kafka_rate(
    bootstrap: str, files: dict[str, Path], work: Path, expected: int, name: str = "kafka"
) -> float:
    """Seconds from ingest start until the adjudicator service applied and published all."""
    from services.config import Settings
    from services.platform import Platform
    from services.stream.view import AppliedView

    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    home = work / f"{name}-home"
    env = {
        **os.environ,
        "TRACT_HOME": str(home),
        "TRACT_BUS": f"kafka://{bootstrap}",
        "TRACT_KAFKA_PREFIX": prefix,
    }
    tract = str(Path(sys.executable).parent / "tract")
    log = (work / "adjudicator.log").open("a")
    service = subprocess.Popen(
        [tract, "adjudicator", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        state = AppliedView.at(home)
        while state.heartbeat_age() is None or state.rebuild_targets():  # joined, serving
            if service.poll() is not None:
                raise SystemExit(f"the adjudicator exited; see {work / 'adjudicator.log'}")
            time.sleep(0.1)
        settings = Settings.from_env(
            {k: v for k, v in env.items() if k.startswith("TRACT_")}, kafka_apply_wait_s=0.0
        )
        platform = Platform.from_settings(settings)
        started = time.perf_counter()
        platform.ingest(STUDY, list(files.values()))
        published = time.perf_counter()
        while True:
            if service.poll() is not None:
                tail = (work / "adjudicator.log").read_text()[-3000:]
                raise SystemExit(f"the adjudicator service exited:\n{tail}")
            if settled(state, expected):
                break
            time.sleep(0.05)
        done = time.perf_counter()
        counts = state.positions()
        print(
            f"  {name}: published in {published - started:.1f}s, applied and outputs "
            f"acknowledged {done - published:.1f}s later; {counts.get('outcome_change', 0)} "
            f"outcome changes, {counts.get('conflict_change', 0)} conflict changes"
        )
        platform.bus.close()
        log.flush()
        sizes = [
            int(line.split("batch of ")[1].split()[0])
            for line in (work / "adjudicator.log").read_text().splitlines()
            if "batch of " in line and line.split("batch of ")[1][0].isdigit()
        ]
        print(f"  adjudicator: {len(sizes)} batches, sizes {sizes}")
        return done - started
    finally:
        service.terminate()
        service.wait(timeout=30)


def embedded_rate(files: dict[str, Path], work: Path) -> float:
    from services.platform import Platform

    platform = Platform.embedded(work / "embedded-home")
    started = time.perf_counter()
    platform.ingest(STUDY, list(files.values()))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--bootstrap", help="an existing broker (default: start one)")
    parser.add_argument("--broker", choices=["tansu", "noida"], default="tansu")
    args = parser.parse_args()

    from services.demo.synthetic import write_synthetic_trial

    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-kafka-")))
        bootstrap = args.bootstrap
        if not bootstrap:
            from tests import servers

            broker = stack.enter_context(
                servers.tansu_broker()
                if args.broker == "tansu"
                else servers.noida_broker(work / "noida")
            )
            bootstrap = broker.bootstrap
        files = write_synthetic_trial(work / "files", args.subjects, seed=1, study=STUDY)
        events = trial_events(files, work / "reference")
        n = len(events)
        print(f"trial: {args.subjects} subjects, {n} events; broker {args.broker} at {bootstrap}")

        produce, consume = raw_rates(bootstrap, events, f"bench-{uuid.uuid4().hex[:8]}.")
        raw = n / (produce + consume)
        kafka = n / kafka_rate(bootstrap, files, work, n)
        embedded = n / embedded_rate(files, work)

        from services.demo.trial import write_demo_trial

        demo = write_demo_trial(work / "demo-files")
        demo_n = len(trial_events(demo, work / "demo-reference"))
        demo_s = kafka_rate(bootstrap, demo, work, demo_n, name="demo")

    print()
    print(f"{'path':44} {'events/s':>10}")
    print(f"{'raw kafka-python produce':44} {n / produce:10.0f}")
    print(f"{'raw kafka-python consume':44} {n / consume:10.0f}")
    print(f"{'raw ceiling: produce + consume (one client)':44} {raw:10.0f}")
    print(f"{'platform on Kafka: files -> outcomes':44} {kafka:10.0f}")
    print(f"{'platform embedded: files -> outcomes':44} {embedded:10.0f}")
    print()
    print(f"kafka / raw ceiling      {kafka / raw:5.2f}   (target >= 0.50)")
    print(f"embedded / raw ceiling   {embedded / raw:5.2f}")
    print(f"kafka / embedded         {kafka / embedded:5.2f}")
    print(f"demo files -> outcomes on Kafka {demo_s:5.1f} s   (target < 45 s)")


if __name__ == "__main__":
    main()
