"""The platform as separate processes on a real broker: the ingest watcher and the adjudicator
service, then the committee and the data manager through the CLI. The same files must give
the same outcomes as the embedded flow, and the lock must be taken at a consistent cut."""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from services.demo.run import DEMO_PASSWORD, decide_scripted, demo_committee
from services.demo.trial import DEMO_DECISIONS, DEMO_STUDY, write_demo_trial
from services.platform import Platform
from tests.bus.stack import TRACT, Stack, drop, expected_counts, running, wait_for
from tests.signing import PASSWORD_LINE, as_data_manager, fast_hasher

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaProducer

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(broker, topic_factory: Callable[..., str], tmp_path: Path):
    with running(Stack(broker.bootstrap, topic_factory("f") + ".", tmp_path)) as s:
        yield s


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_demo_trial(tmp_path_factory.mktemp("demo-files"))


def _without_decision_ids(outcomes: dict) -> dict:
    strip = lambda rows: [{k: v for k, v in r.items() if k != "decision_id"} for r in rows]  # noqa: E731
    return outcomes | {
        "tracts": strip(outcomes["tracts"]),
        "new_tracts": strip(outcomes["new_tracts"]),
    }


def test_watcher_and_adjudicator_give_the_embedded_outcomes(
    stack: Stack, demo_files: dict[str, Path], tmp_path: Path
) -> None:
    embedded = Platform.embedded(tmp_path / "embedded")
    embedded.ingest(DEMO_STUDY, list(demo_files.values()))
    expected = expected_counts(embedded)

    stack.start("adjudicator", "adjudicator", "run", "--max-batch", "400")
    stack.start("watcher", "ingest", "--study", DEMO_STUDY, "--watch", str(stack.root / "drop"))
    wait_for(lambda: (stack.root / "drop" / "processed").exists(), 30, "the watcher to start")

    # a malformed message on an event topic, among good ones: dead-lettered, the service goes on
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    topic = f"{stack.prefix}tract.clinical_exam"
    producer.send(topic, key=b"DEMO/S01", value=b'{"record_id": 1}', headers=[])
    producer.flush(timeout=20)
    producer.close(timeout=10)

    drop(list(demo_files.values()), stack.root / "drop")
    processed = stack.root / "drop" / "processed"
    wait_for(
        lambda: len(list(processed.glob("*.report.json"))) == len(demo_files),
        60,
        f"the watcher to process the files:\n{stack.log('watcher')[-2000:]}",
    )
    stack.wait_applied(expected | {"rejected_row": expected["rejected_row"] + 1})
    assert not list((stack.root / "drop" / "refused").iterdir())
    reports = [json.loads(p.read_text()) for p in processed.glob("*.report.json")]
    assert {r["file"] for r in reports} == set(demo_files)
    assert all(r["read"] == r["accepted"] + r["duplicates"] + r["rejected"] for r in reports)

    kafka_outcomes = stack.cli_json("outcomes", "--study", DEMO_STUDY)
    embedded_home = ["--home", str(tmp_path / "embedded"), "--bus", "embedded"]
    assert kafka_outcomes == Stack.embedded_json(embedded_home, "outcomes", "--study", DEMO_STUDY)
    kafka_conflicts = stack.cli_json("conflicts", "--study", DEMO_STUDY)
    assert kafka_conflicts == Stack.embedded_json(embedded_home, "conflicts", "--study", DEMO_STUDY)

    letters = stack.applied().records("rejected_row").collect()  # of no study: no headers
    malformed = letters.filter(pl.col("file").str.starts_with("kafka:")).to_dicts()
    assert len(malformed) == 1 and malformed[0]["field"] == "headers"
    assert malformed[0]["file"].startswith(f"kafka:{topic}[")
    assert "missing event_id" in malformed[0]["reason"]

    # the committee: one decision through the CLI process, the rest through the library
    first, *rest = DEMO_DECISIONS
    conflict_id = next(
        c["conflict_id"]
        for c in kafka_conflicts
        if (c["type"], c["subject_id"], c["tract_id"])
        == (first.conflict_type, first.subject_id, first.tract_id)
    )
    kafka = stack.platform()
    kafka_users = demo_committee(kafka, fast_hasher())  # recorded on Kafka, as `tract users`
    for member in first.members:  # each member signs their own vote, in their own process
        subprocess.run(
            [
                TRACT,
                "vote",
                conflict_id,
                *(["--status", first.status] if first.status else []),
                *(["--maps-to", first.maps_to] if first.maps_to else []),
                "--rationale",
                first.rationale,
                "--as",
                member,
                "--password-stdin",
                "--study",
                DEMO_STUDY,
            ],
            env={**os.environ, **stack.env()},
            input=DEMO_PASSWORD + "\n",
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        )
    embedded_users = demo_committee(embedded, fast_hasher())
    decide_scripted(embedded, first, embedded_users)
    decided = [c for c in stack.cli_json("conflicts", "--study", DEMO_STUDY, "--all")]
    assert {c["conflict_id"]: c["status"] for c in decided}[conflict_id] == "DECIDED"
    for scripted in rest:
        decide_scripted(kafka, scripted, kafka_users)
        decide_scripted(embedded, scripted, embedded_users)
    kafka.bus.close()
    assert _without_decision_ids(
        stack.cli_json("outcomes", "--study", DEMO_STUDY)
    ) == _without_decision_ids(
        Stack.embedded_json(embedded_home, "outcomes", "--study", DEMO_STUDY)
    )

    # a lock signed for Airflow travels the bus like any event: the service applies it, and
    # the database_lock DAG reads it there (tests/dags take such a lock)
    manager = stack.platform()
    signing = as_data_manager(stack.home, manager)  # the account recorded on Kafka
    manager.bus.close()
    asked = subprocess.run(
        [TRACT, "lock", "--study", DEMO_STUDY, "--lock-id", "VIA-AIRFLOW", "--reason", "interim",
         *signing, "--open-queries-reason", "sites answer later",
         "--for-airflow", "--json"],
        env={**os.environ, **stack.env()}, input=PASSWORD_LINE, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    request_id = json.loads(asked.stdout)["request_id"]
    reader = stack.platform()
    wait_for(
        lambda: (
            reader.records("lock_request", DEMO_STUDY).collect()["request_id"].to_list()
            == [request_id]
        ),
        30,
        "the signed lock request to be applied",
    )
    reader.bus.close()

    # the data manager locks (signed) at the adjudicator's applied positions, on every partition
    locked = subprocess.run(
        [TRACT, "lock", "--study", DEMO_STUDY, "--lock-id", "PRIMARY", "--reason", "primary",
         *as_data_manager(stack.home), "--open-queries-reason", "sites answer later"],
        env={**os.environ, **stack.env()}, input=PASSWORD_LINE, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert locked.returncode == 0, locked.stderr
    manifest = json.loads(
        (stack.home / "objects" / "locks" / DEMO_STUDY / "PRIMARY" / "manifest.json").read_text()
    )
    cut = {k: v for k, v in manifest["positions"].items() if k.startswith("kafka/")}
    assert any(k.startswith(f"kafka/{topic}/") for k in cut)
    lock_topic = f"kafka/{stack.prefix}tract.lock/0"
    wait_for(  # past the cut: the CLAIM before it may already be applied (position 1)
        lambda: stack.applied_kafka().get(lock_topic, 0) > cut.get(lock_topic, 0),
        30,
        "the lock event to be applied",
    )
    stack.wait_settled()  # the lock's outputs too: nothing is appended while the test compares
    now = stack.applied_kafka()
    # nothing else came after the cut but the LOCK event (the id's CLAIM is inside the cut)
    assert {k: v for k, v in cut.items() if k != lock_topic} == {
        k: v for k, v in now.items() if k != lock_topic
    }
    assert now[lock_topic] == cut.get(lock_topic, 0) + 1
    report = stack.cli_json("report", "--study", DEMO_STUDY, "--lock", "PRIMARY")
    assert (report["completers"]["FULL_CLOSURE"], report["completers"]["IMPROVED"]) == (12, 4)
    assert (report["tracts"]["closed"], report["tracts"]["treated"]) == (30, 43)

    # what the service published: the last outcome per tract is the outcome the CLI shows
    final = {
        (t["subject_id"], t["tract_id"]): t["outcome"]
        for t in stack.cli_json("outcomes", "--study", DEMO_STUDY)["tracts"]
    }
    last: dict[tuple[str, str], str] = {}
    for _headers, payload in stack.topic_records("outcome_change"):
        if payload["level"] == "TRACT":
            last[(payload["subject_id"], payload["tract_id"])] = payload["outcome"]
    assert {k: v for k, v in last.items() if k in final} == final

    # the auditor: every event the service applied is chained, and the lock is anchored on it
    verdict = stack.cli_json("verify")
    assert verdict["verdict"] == "INTACT", verdict["findings"]
    assert verdict["home"] == str(stack.home / "adjudicator")
    assert verdict["log"]["events"] == sum(stack.applied_counts().values())
    [checked] = verdict["locks"]
    assert (checked["lock_id"], checked["integrity"]) == ("PRIMARY", "verified")
    assert checked["anchored_at"] == manifest["chain"]["seq"]
    assert verdict["state"] == {DEMO_STUDY: "matches the log"}  # the service's outcomes' files
