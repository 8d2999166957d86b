"""Crashes and outages: the adjudicator killed with SIGKILL mid-stream and restarted, and a
broker that is down when the services start. No data lost, no output published twice, the
same outcomes as the embedded flow."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from services.adjudicator.state import EVIDENCE_KINDS
from services.demo.synthetic import write_synthetic_trial
from services.demo.trial import DEMO_STUDY, write_demo_trial
from services.platform import Platform
from services.stream.changes import load_published
from tests import servers
from tests.bus.stack import Stack, drop, expected_counts, running, wait_for

pytestmark = pytest.mark.slow
STUDY = "SYN"


def _evidence_applied(stack: Stack) -> int:
    counts = stack.applied_counts()
    return sum(counts.get(k, 0) for k in EVIDENCE_KINDS)


def _embedded_json(tmp_path: Path, *args: str):
    return Stack.embedded_json(["--home", str(tmp_path / "embedded"), "--bus", "embedded"], *args)


def test_kill_9_mid_stream_then_restart(
    broker, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    files = write_synthetic_trial(tmp_path / "files", 120, seed=3, study=STUDY)
    embedded = Platform.embedded(tmp_path / "embedded")
    embedded.ingest(STUDY, list(files.values()))
    expected = expected_counts(embedded)
    total = sum(expected[k] for k in EVIDENCE_KINDS)

    with running(Stack(broker.bootstrap, topic_factory("k") + ".", tmp_path)) as stack:
        kafka = stack.platform(kafka_apply_wait_s=0)
        kafka.ingest(STUDY, list(files.values()))  # everything waits on the broker
        kafka.bus.close()

        for fraction in (0.2, 0.6):
            stack.start("adjudicator", "adjudicator", "run", "--max-batch", "150")
            wait_for(
                lambda f=fraction: _evidence_applied(stack) >= f * total,
                60,
                f"{fraction:.0%} applied:\n{stack.log('adjudicator')[-2000:]}",
                every=0.02,
            )
            stack.kill("adjudicator")  # SIGKILL, wherever it is
        applied_at_kill = _evidence_applied(stack)
        assert applied_at_kill < total, "the kill came after the end: not mid-stream"

        stack.start("adjudicator", "adjudicator", "run", "--max-batch", "150")
        stack.wait_applied(expected)
        stack.wait_settled()  # everything applied: no output can follow once it has settled

        assert stack.cli_json("outcomes", "--study", STUDY) == _embedded_json(
            tmp_path, "outcomes", "--study", STUDY
        )
        assert stack.cli_json("conflicts", "--study", STUDY) == _embedded_json(
            tmp_path, "conflicts", "--study", STUDY
        )

        outputs = stack.topic_records("outcome_change")
        ids = Counter(headers["event_id"] for headers, _ in outputs)
        assert ids and max(ids.values()) == 1, "an output was published twice"
        per_key: dict[tuple, list[int]] = {}
        for _, p in outputs:
            per_key.setdefault((p["level"], p["subject_id"], p["tract_id"]), []).append(p["seq"])
        assert all(seqs == list(range(len(seqs))) for seqs in per_key.values())
        state = stack.applied()
        mirrored = state.records("outcome_change").collect()
        assert mirrored.height == len(outputs)  # every output the state holds reached Kafka
        published = load_published(mirrored)
        assert len(published) == len(per_key)
        conflicts = Counter(h["event_id"] for h, _ in stack.topic_records("conflict_change"))
        assert not conflicts or max(conflicts.values()) == 1


@pytest.mark.parametrize("kind", ["tansu", "noida"])
def test_a_broker_down_at_start(kind: str, topic_factory: Callable[..., str], tmp_path: Path):
    files = write_demo_trial(tmp_path / "files")
    embedded = Platform.embedded(tmp_path / "embedded")
    accepted = sum(r.accepted for r in embedded.ingest(DEMO_STUDY, list(files.values())).reports)
    expected = expected_counts(embedded)
    start = servers.tansu_broker() if kind == "tansu" else servers.noida_broker(tmp_path / "nd")
    with start as broker:
        broker.stop()
        stack = Stack(broker.bootstrap, topic_factory("d") + ".", tmp_path)
        with running(stack):
            # a one-shot command: a clear error after a bounded number of attempts, exit code 1
            done = stack.tract(
                "ingest",
                "--study",
                DEMO_STUDY,
                str(files["subjects.csv"]),
                check=False,
                env={"TRACT_KAFKA_TIMEOUT_S": "1", "TRACT_KAFKA_RETRIES": "2"},
            )
            assert done.returncode == 1, done.stderr
            assert f"Kafka at {broker.bootstrap}" in done.stderr
            assert "did not answer" in done.stderr and "2 attempt(s)" in done.stderr

            # the services: they log, keep the files, and retry until the broker is back
            stack.start("adjudicator", "adjudicator", "run")
            stack.start("watcher", "ingest", "--study", DEMO_STUDY, "--watch", str(tmp_path / "in"))
            wait_for(lambda: (tmp_path / "in" / "processed").exists(), 30, "the watcher")
            drop(list(files.values()), tmp_path / "in")
            wait_for(lambda: "retrying" in stack.log("watcher"), 60, "the watcher to retry")
            assert sorted(p.name for p in (tmp_path / "in").glob("*.*")) == sorted(files)
            wait_for(lambda: "retrying" in stack.log("adjudicator"), 60, "the service to retry")

            broker.start()
            processed = tmp_path / "in" / "processed"
            try:
                wait_for(lambda: len(list(processed.glob("*.report.json"))) == len(files), 60, "")
            except AssertionError:
                raise AssertionError(f"files not ingested:\n{stack.dump_stacks()}") from None
            stack.wait_applied(expected, timeout=90)
            stack.wait_settled()
            assert stack.cli_json("outcomes", "--study", DEMO_STUDY) == _embedded_json(
                tmp_path, "outcomes", "--study", DEMO_STUDY
            )
            reports = [json.loads(p.read_text()) for p in processed.glob("*.report.json")]
            assert sum(r["accepted"] for r in reports) == accepted  # nothing lost or doubled
