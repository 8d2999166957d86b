"""Loss is loud on Kafka: the adjudicator's state deleted, then rebuilt from the topics.

Before the service starts again, read commands say that there is no state (never "0 tracts");
while it rebuilds they say "rebuilding: N of M records applied" (exit 1); once rebuilt they
answer what they answered before, and the service publishes nothing twice (it reads back the
outputs already on Kafka before it rebuilds, so their sequence goes on)."""

from __future__ import annotations

import shutil
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli import cli
from services.demo.trial import DEMO_STUDY, write_demo_trial
from services.stream.applied import applied_root
from services.stream.errors import RebuildingError
from services.stream.view import rebuilding_text
from tests.bus.stack import Stack, running, wait_for

pytestmark = pytest.mark.slow


def _outputs(stack: Stack) -> dict[str, Counter]:
    return {
        kind: Counter(headers["event_id"] for headers, _ in stack.topic_records(kind))
        for kind in ("outcome_change", "conflict_change")
    }


def test_a_deleted_state_is_refused_then_rebuilt_without_publishing_twice(
    broker, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    files = write_demo_trial(tmp_path / "files")
    with running(Stack(broker.bootstrap, topic_factory("r") + ".", tmp_path)) as stack:
        stack.start("adjudicator", "adjudicator", "run")
        wait_for(lambda: stack.applied().heartbeat_age() is not None, 60, "the service to run")
        kafka = stack.platform()
        kafka.ingest(DEMO_STUDY, list(files.values()))
        kafka.bus.close()
        stack.wait_settled()
        before = {
            "outcomes": stack.cli_json("outcomes", "--study", DEMO_STUDY),
            "conflicts": stack.cli_json("conflicts", "--study", DEMO_STUDY, "--all"),
        }
        assert before["outcomes"]["tracts"] and before["conflicts"]
        published = _outputs(stack)

        stack.stop_all()
        shutil.rmtree(applied_root(stack.home))
        for command in ("outcomes", "conflicts", "report"):
            refused = stack.tract(command, "--study", DEMO_STUDY, check=False)
            assert refused.returncode == 1, (command, refused.stdout)
            assert "no applied state" in refused.stderr and "Traceback" not in refused.stderr

        # small batches, each one due at once: the topics come back in no order across kinds
        # (reads before their subject), and nothing may be computed from a part of them
        rebuild = ("--max-batch", "50", "--max-lag", "0")
        service = stack.start("adjudicator", "adjudicator", "run", *rebuild)
        wait_for(lambda: stack.applied().rebuild_targets(), 60, "the rebuild to begin")
        service.send_signal(signal.SIGSTOP)  # hold it mid-rebuild (briefly: in-process reads)
        try:
            state = stack.applied()
            said = rebuilding_text(state.kafka_positions(), state.rebuild_targets())
            assert said.startswith("rebuilding: ") and "records applied" in said
            env = stack.env() | {"TRACT_KAFKA_APPLY_WAIT_S": "0"}  # do not wait: it is stopped
            for command in ("outcomes", "conflicts", "report", "audit"):
                refused = CliRunner().invoke(cli, [command, "--study", DEMO_STUDY], env=env)
                assert refused.exit_code == 1 and not refused.stdout, (command, refused.stdout)
                assert isinstance(refused.exception, RebuildingError), refused.exception
                assert str(refused.exception) == said
            status = CliRunner().invoke(cli, ["adjudicator", "status"], env=env)
            assert said in status.stdout
        finally:
            service.send_signal(signal.SIGCONT)

        stack.wait_settled()
        assert stack.cli_json("outcomes", "--study", DEMO_STUDY) == before["outcomes"]
        assert stack.cli_json("conflicts", "--study", DEMO_STUDY, "--all") == before["conflicts"]
        assert _outputs(stack) == published  # nothing published again, nothing twice
        assert all(n == 1 for counts in published.values() for n in counts.values())


def test_a_rebuild_computes_nothing_until_every_record_is_applied_whatever_the_broker_says(
    broker, topic_factory: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tansu can report an end offset of 0 for a partition that holds records. A rebuild that
    took such ends at their word would compute outcomes from the first records it applied
    (reads before their subject, exams before their tract) and publish conflicts that the rest
    of the records clear, and outcomes that they change. Here every end is reported as 0: the
    rebuilt service still publishes each tract's outcome once, and raises only the conflicts
    the whole trial has, none of them cleared."""
    from services.bus.kafka import KafkaBus
    from services.bus.kafka_config import KafkaConfig
    from services.stream.applied import AppliedLog
    from services.stream.service import AdjudicatorService

    stack = Stack(broker.bootstrap, topic_factory("z") + ".", tmp_path)
    kafka = stack.platform()
    kafka.ingest(DEMO_STUDY, list(write_demo_trial(tmp_path / "files").values()))
    kafka.bus.close()

    settings = stack.settings()
    bus = KafkaBus(KafkaConfig.from_settings(settings))
    reported = bus.end_offsets
    monkeypatch.setattr(bus, "end_offsets", lambda kinds: dict.fromkeys(reported(kinds), 0))
    # small batches, each one due at once: as the deleted-state test above rebuilds
    service = AdjudicatorService(bus, AppliedLog.at(settings.home), max_batch=50, max_lag_s=0)
    try:
        service.connect()
        assert service.log.rebuild_targets(), "the service did not begin a rebuild"
        wait_for(lambda: service.step() == 0 and stack.settled(), 120, "the rebuild to end")
    finally:
        service.close()

    tracts = Counter(
        (change["subject_id"], change["tract_id"])
        for _, change in stack.topic_records("outcome_change")
        if change["level"] == "TRACT"
    )
    assert tracts and set(tracts.values()) == {1}, tracts.most_common(3)
    changes = [change for _, change in stack.topic_records("conflict_change")]
    assert {c["condition"] for c in changes} == {"RAISED"}, [
        (c["conflict_type"], c["subject_id"], c["condition"]) for c in changes
    ]
    open_now = stack.cli_json("conflicts", "--study", DEMO_STUDY, "--all")
    assert sorted(c["conflict_id"] for c in changes) == sorted(c["conflict_id"] for c in open_now)
