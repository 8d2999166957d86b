"""The platform on Kafka as users run it: ``tract`` processes against a real broker, with
their own topic prefix and home, and ways to wait for them and read what they did."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from services.adjudicator.ruleset import load_ruleset
from services.adjudicator.state import EVIDENCE_KINDS
from services.cli import cli
from services.config import Settings
from services.platform import Platform
from services.stream.view import AppliedView
from tests.servers import wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, TopicPartition

TRACT = str(Path(sys.executable).parent / "tract")


@dataclass
class Stack:
    bootstrap: str
    prefix: str
    root: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def bus(self) -> str:
        return f"kafka://{self.bootstrap}"

    def env(self) -> dict[str, str]:
        return {
            "TRACT_HOME": str(self.home),
            "TRACT_BUS": self.bus,
            "TRACT_KAFKA_PREFIX": self.prefix,
            "TRACT_KAFKA_TIMEOUT_S": "5",
            "PYTHONUNBUFFERED": "1",
        } | self.extra_env

    def settings(self, **kw: Any) -> Settings:
        return Settings.from_env(self.env(), **kw)

    def platform(self, **kw: Any) -> Platform:
        return Platform.from_settings(self.settings(**kw))

    # processes -----------------------------------------------------------------------------
    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [TRACT, *args],
            env={**os.environ, **self.env()},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def dump_stacks(self) -> str:
        """Ask every live process for its thread stacks (SIGUSR1, see services/serve.py)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        return "\n".join(f"--- {name} ---\n{self.log(name)[-6000:]}" for name in self.procs)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in list(self.procs.items()):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            self.procs.pop(name)

    def tract(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [TRACT, *args],
            env={**os.environ, **self.env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=180,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"tract {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return done

    def cli_json(self, *args: str) -> Any:
        """A read-only command through the CLI, in this process (no interpreter start-up)."""
        result = CliRunner().invoke(cli, [*args, "--json"], env=self.env(), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    @staticmethod
    def embedded_json(home_args: list[str], *args: str) -> Any:
        """The same command on an embedded home, for comparison."""
        result = CliRunner().invoke(
            cli, [*home_args, *args, "--json"], env={"TRACT_BUS": ""}, catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    # what the adjudicator applied -----------------------------------------------------------
    def applied(self) -> AppliedView:
        """The adjudicator service's applied state, read as the CLI reads it."""
        return AppliedView.at(self.home)

    def applied_counts(self) -> dict[str, int]:
        state = self.applied()
        try:
            return state.positions()
        finally:
            state.close()

    def applied_kafka(self) -> dict[str, int]:
        state = self.applied()
        try:
            return {f"kafka/{t}/{p}": o for (t, p), o in state.kafka_positions().items()}
        finally:
            state.close()

    def wait_applied(self, expected: dict[str, int], timeout: float = 60.0) -> None:
        """Until the service holds exactly ``expected`` events of each evidence kind."""

        def done() -> bool:
            counts = self.applied_counts()
            return all(counts.get(k, 0) == n for k, n in expected.items())

        try:
            wait_for(done, timeout, "the adjudicator to apply everything", every=0.2)
        except AssertionError:
            raise AssertionError(
                f"applied {self.applied_counts()} != expected {expected}\n"
                f"--- adjudicator log ---\n{self.log('adjudicator')[-3000:]}"
            ) from None

    def settled(self) -> bool:
        """The service has nothing left to do with what it applied: no rebuild under way, no
        subject owed a publication, nothing in the outbox, the outcomes caught up."""
        state = self.applied()
        try:
            return (
                state.exists
                and bool(state.kafka_positions())
                and not state.rebuild_targets()
                and not state.dirty()
                and not state.outbox()
                and state.maintained_state(load_ruleset()).behind() == 0
            )
        finally:
            state.close()

    def wait_settled(self, timeout: float = 60.0) -> None:
        try:
            wait_for(self.settled, timeout, "the adjudicator to settle", every=0.2)
        except AssertionError:
            raise AssertionError(
                f"not settled\n--- adjudicator log ---\n{self.log('adjudicator')[-3000:]}"
            ) from None

    def topic_records(self, kind: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        """Every record of ``kind``'s topic: (headers, payload), by partition and offset.

        Read to the end: every partition at least at the broker's end offset and a poll that
        finds nothing more (not a quiet spell alone: on a loaded machine the first fetch can
        take longer than one; Tansu may under-report the end offset)."""
        from services.bus.kafka_config import KafkaConfig

        topic = KafkaConfig.from_settings(self.settings()).topic(kind)
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        try:
            partitions = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            assert partitions, f"topic {topic} has no partitions"
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            ends = consumer.end_offsets(partitions)
            records: list[Any] = []
            deadline = time.monotonic() + 60
            while True:
                batch = consumer.poll(timeout_ms=500)
                for found in batch.values():
                    records.extend(found)
                if not batch and all(consumer.position(tp) >= ends[tp] for tp in partitions):
                    break
                assert time.monotonic() < deadline, f"reading {topic} did not finish in 60s"
        finally:
            consumer.close()
        return [
            ({k: (v or b"").decode() for k, v in r.headers or ()}, json.loads(r.value))
            for r in sorted(records, key=lambda r: (r.partition, r.offset))
        ]


def expected_counts(embedded: Platform) -> dict[str, int]:
    positions = embedded.source.positions()
    return {kind: positions.get(kind, 0) for kind in (*EVIDENCE_KINDS, "rejected_row")}


def drop(files: list[Path], folder: Path) -> None:
    """Deliver files the way a sender should: write ``.part``, then rename."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        part = folder / (path.name + ".part")
        shutil.copyfile(path, part)
        part.replace(folder / path.name)


@contextmanager
def running(stack: Stack) -> Iterator[Stack]:
    try:
        yield stack
    finally:
        stack.stop_all()
