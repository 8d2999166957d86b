"""The adjudicator as a service: one consumer-group member over every event topic.

Per batch: drop events already applied (by event id), refuse conflicting duplicates and
malformed records as dead letters, recompute only the subjects the batch touched, and derive
outcome and conflict changes. Then, in this order: (1) one SQLite transaction holds the new
events, the outputs, the Kafka positions applied and the outbox; (2) the outbox goes to Kafka
(acks=all); (3) the outbox is cleared; (4) the consumer offsets are committed. A SIGKILL
anywhere leaves either the old state (the batch is read again) or the new state with an
outbox, which a restart compares with what reached Kafka before sending the rest: the same
outcomes, and no output published twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import schemas
from services.adjudicator.applied import AppliedLog, Identity, Position
from services.adjudicator.changes import load_published, outcome_changes, remember
from services.adjudicator.errors import AdjudicatorError
from services.adjudicator.memory import Frames, SubjectView
from services.adjudicator.ruleset import RuleSet, load_ruleset
from services.adjudicator.state import EVIDENCE_KINDS
from services.bus.errors import BusError, BusUnavailableError
from services.bus.kafka import Delivery, KafkaBus
from services.events import Event, canonical_json, digest, utc_now
from services.log.segment import events_of
from services.state.records import adjudicate_study, lock_cut, lock_in_force
from services.state.register import register_changes

log = logging.getLogger(__name__)

TOUCHES_SUBJECT = frozenset({*EVIDENCE_KINDS, "committee_decision", "committee_vote"})


class AdjudicatorService:
    def __init__(
        self,
        bus: KafkaBus,
        log_: AppliedLog,
        rules: RuleSet | None = None,
        max_batch: int = 20_000,
        max_lag_s: float = 5.0,
    ) -> None:
        self.bus, self.log, self.rules = bus, log_, rules or load_ruleset()
        self.max_batch, self.max_lag_s = max_batch, max_lag_s
        self.consumer: Any = None
        self._pending: list[Event] = []
        self._beat_at = 0.0
        self._guard = _single_instance(Path(log_.path).parent / "service.lock")
        self.frames = Frames.load(log_)
        self.seen = {k: set(self.frames.event_ids(k).to_list()) for k in self.frames.kinds()}
        self.identities = {(k, s, r, v): (h, e) for k, s, r, v, h, e in log_.identities()}
        self.published = load_published(self.frames.frame("outcome_change"))
        self.dirty: dict[str, set[str] | None] = log_.dirty()  # touched, not yet published
        self._dirty_since: float | None = None
        self.stats = {"records": 0, "applied": 0, "dead_letters": 0, "outputs": 0, "batches": 0}

    # lifecycle -----------------------------------------------------------------------------
    def recover(self) -> None:
        """Publish what a crash left in the outbox, skipping what already reached Kafka."""
        pending = self.log.outbox()
        if not pending:
            return
        kinds = sorted({e.kind for e in pending})
        found = self.bus.published_ids(self.log.output_ends(), kinds)
        unsent = [e for e in pending if e.event_id not in found]
        log.info(
            "outbox after a crash: %d output(s), %d already on Kafka, sending %d",
            len(pending),
            len(pending) - len(unsent),
            len(unsent),
        )
        self._flush(pending, unsent)

    def connect(self) -> None:
        self.bus.ensure_topics()
        self.recover()
        self.consumer = self.bus.subscribe(
            self.bus.config.adjudicator_group,
            self.bus.config.input_kinds(),
            on_assign=self._starts,
            max_records=self.max_batch,
            instance=f"adjudicator@{socket.gethostname()}",
        )

    def run(self, should_stop: Callable[[], bool], retry_s: float = 5.0) -> None:
        """Serve until ``should_stop()``; an unreachable broker is logged and retried."""
        while not should_stop():
            try:
                if self.consumer is None:
                    self.connect()
                self.step()
            except BusUnavailableError as exc:
                log.error("%s; retrying in %.0fs", exc, retry_s)
                deadline = time.monotonic() + retry_s
                while time.monotonic() < deadline and not should_stop():
                    time.sleep(0.2)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        self.bus.close()
        self._guard.close()

    # one batch -----------------------------------------------------------------------------
    def step(self, timeout_s: float = 1.0) -> int:
        """Apply what the next poll brings (growing the batch while records keep coming)."""
        if self._pending:
            self._flush(self._pending, self._pending)
        deliveries = self.consumer.deliveries(self.max_batch, timeout_s)
        caught_up = True
        while deliveries:
            if len(deliveries) >= self.max_batch:
                caught_up = False
                break
            more = self.consumer.deliveries(self.max_batch - len(deliveries), 0.05)
            if not more:
                break
            deliveries += more
        if deliveries or self.dirty:
            self.apply(deliveries, caught_up)
        self._beat()
        return len(deliveries)

    def apply(self, deliveries: Sequence[Delivery], caught_up: bool = True) -> None:
        """Apply a batch; publish the outcome and conflict changes of the subjects touched
        since the last publication, unless more records are waiting (then at most
        ``max_lag_s`` later): a bulk load is recomputed once, not once per batch."""
        started = time.monotonic()
        applied: dict[Position, int] = {}
        fresh: list[Event] = []
        dead: list[Event] = []
        identities: list[Identity] = []
        for d in deliveries:
            position = (d.topic, d.partition)
            applied[position] = max(applied.get(position, 0), d.offset + 1)
            event = d.event
            if event is None:
                log.warning("malformed %s[%d]@%d: %s", d.topic, d.partition, d.offset, d.problem)
                if d.kind != "rejected_row":  # never dead-letter the dead-letter topic itself
                    self._keep_new(d.dead_letter(), dead)
                continue
            if event.event_id in self._seen(event.kind):
                continue
            refusal = self._check_identity(event, identities)
            if refusal is not None:
                log.warning("refused %s: %s", event.event_id, refusal.payload["reason"])
                self._keep_new(refusal, dead)
                continue
            self._keep_new(event, fresh)
            self._touch(event)
        placed = self.frames.append(fresh + dead)
        if self.dirty and self._dirty_since is None:
            self._dirty_since = started
        lag = started - (self._dirty_since or started)
        touched = self.dirty if caught_up or lag >= self.max_lag_s else {}
        outputs = self._outputs(touched)
        outbox = placed[len(fresh) :] + outputs  # the dead letters, then the outputs
        if touched:
            self.dirty, self._dirty_since = {}, None
        self.log.apply(placed + outputs, applied, identities, outbox, self.dirty)
        self._flush(outbox, outbox)
        if applied:
            with contextlib.suppress(BusError):  # resume comes from the state file: a hint
                self.consumer.commit(applied)
        self._count(len(deliveries), len(fresh), len(dead), len(outputs))
        log.info(
            "batch of %d record(s): %d applied, %d dead letter(s), %d output(s) for %s in %.0f ms",
            len(deliveries),
            len(fresh),
            len(dead),
            len(outputs),
            _subjects(touched) if touched else f"none yet ({_subjects(self.dirty)} pending)",
            1000 * (time.monotonic() - started),
        )

    def _touch(self, event: Event) -> None:
        if event.kind in TOUCHES_SUBJECT:
            subjects = self.dirty.setdefault(event.study, set())
            if subjects is not None:
                subjects.add(event.subject_id)
        elif event.kind == "lock":
            self.dirty[event.study] = None  # post-lock flags may change anywhere in the study

    # helpers -------------------------------------------------------------------------------
    def _outputs(self, touched: dict[str, set[str] | None]) -> list[Event]:
        at = utc_now()
        outputs: list[Event] = []
        for study, subjects in sorted(touched.items()):
            view = SubjectView(self.frames, subjects)
            lock = lock_cut(lock_in_force(view, study))
            result = adjudicate_study(view, study, self.rules, lock_cut=lock)
            changes = outcome_changes(study, result, subjects, self.published, at)
            register = view.records("conflict_change", study).collect()
            register_batch, _ = register_changes(study, result.conflicts, register, at, subjects)
            conflict_events = events_of(register_batch)
            batch: list[Event] = []
            for event in changes + conflict_events:
                self._keep_new(event, batch)
            remember(self.published, changes)
            outputs += self.frames.append(batch)
        return outputs

    def _flush(self, outbox: list[Event], send: list[Event]) -> None:
        """Send ``send``, then mark all of ``outbox`` as published."""
        if not outbox:
            return
        self._pending = outbox
        landed = self.bus.send(send)
        ends: dict[Position, int] = {}
        for topic, partition, offset in landed:
            ends[(topic, partition)] = max(ends.get((topic, partition), 0), offset + 1)
        self.log.sent(outbox, ends)
        self._pending = []

    def _starts(self, assigned: list[Position]) -> dict[Position, int]:
        """Where each newly assigned partition resumes: the state file's applied position
        (the beginning if it has none, so a lost state file is rebuilt from the log)."""
        applied = self.log.kafka_positions()
        inputs = self.bus.config.input_kinds()
        expected = sum(t.partitions for t in self.bus.config.topics if t.kind in inputs)
        if len(assigned) < expected:
            log.warning(
                "this instance holds %d of %d partitions: another adjudicator runs in group %s; "
                "run exactly one (the state file must see every subject)",
                len(assigned),
                expected,
                self.bus.config.adjudicator_group,
            )
        return {p: applied[p] for p in assigned if p in applied}

    def _seen(self, kind: str) -> set[str]:
        return self.seen.setdefault(kind, set())

    def _keep_new(self, event: Event, into: list[Event]) -> None:
        ids = self._seen(event.kind)
        if event.event_id not in ids:
            ids.add(event.event_id)
            into.append(event)

    def _check_identity(self, event: Event, identities: list[Identity]) -> Event | None:
        """None if the record id + version is new or the same content; else a dead letter."""
        if event.kind not in EVIDENCE_KINDS:
            return None
        contract = schemas.contract(event.kind)
        record_id = str(event.payload[contract.id_field])
        version = int(event.payload[contract.version_field])
        key = (event.kind, event.study, record_id, version)
        content = str(event.payload.get("content_hash") or event.event_id)
        known = self.identities.get(key)
        if known is None:
            self.identities[key] = (content, event.event_id)
            identities.append((*key, content, event.event_id))
            return None
        if known[0] == content:
            return None
        return conflicting_duplicate(event, contract.id_field, contract.version_field, known[1])

    def _count(self, records: int, applied: int, dead: int, outputs: int) -> None:
        self.stats["records"] += records
        self.stats["applied"] += applied
        self.stats["dead_letters"] += dead
        self.stats["outputs"] += outputs
        self.stats["batches"] += 1

    def _beat(self) -> None:
        if time.monotonic() - self._beat_at > 2.0:
            self.log.beat()
            self._beat_at = time.monotonic()


def _subjects(touched: dict[str, set[str] | None]) -> str:
    parts = [f"{study}: all" if s is None else f"{study}: {len(s)}" for study, s in touched.items()]
    return f"subjects ({', '.join(parts)})"


def conflicting_duplicate(event: Event, id_field: Any, version_field: Any, known: str) -> Event:
    """A dead letter for a record id + version that arrived again with other content."""
    p = event.payload
    payload = {
        "source_kind": event.kind,
        "file": p.get("source_file") or f"event {event.event_id}",
        "line": int(p.get("source_line") or 0),
        "field": version_field,
        "reason": (
            f"conflicting duplicate: {id_field} {p[id_field]} {version_field} {p[version_field]} "
            f"was already applied with different content (event {known}); send a new version "
            "with a change_reason"
        ),
        "raw": canonical_json(p),
        "ingest_run": p.get("ingest_run") or "adjudicator",
    }
    return Event(
        "rejected_row",
        event.study,
        event.subject_id,
        digest("conflicting-duplicate", event.event_id),
        payload,
    )


class _Guard:
    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def close(self) -> None:
        self._handle.close()


def _single_instance(path: Path) -> _Guard:
    """One service per state file: a second one would interleave writes and outputs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise AdjudicatorError(
            f"another adjudicator service already runs on {path.parent} (pid {holder}); "
            "stop it first, or give this one its own --home"
        ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return _Guard(handle)
