"""The adjudicator as a service: one consumer-group member over every input topic.

Per poll: drop events already applied (by event id), refuse conflicting duplicates and
malformed records as dead letters, and apply the rest as frames, one segment per kind and
study, in one commit with the Kafka positions applied, the identities, the dead letters to
send and the subjects touched (:mod:`services.stream.applied`). Once caught up (during a bulk
load, at most ``max_lag_s`` later) it brings the maintained outcomes up to date for the
touched subjects alone (:mod:`services.state`: its conflict register's changes join the
outbox in the same commit), and appends the outcome changes with the outbox and the cleared
subjects in one more commit. Then, in this order: the outbox goes to Kafka (acks=all), is
cleared, and the consumer offsets are committed (a hint: restarts resume from the state).

A SIGKILL anywhere leaves either the old state (the batch is read again) or the new one with
an outbox, which a restart compares with what reached Kafka before sending the rest: the same
outcomes, and no output published twice. A new or deleted state is rebuilt from the topics
(read commands meanwhile say "rebuilding: N of M records applied"), after reading the outputs
already on Kafka back into it, so the rebuilt service goes on where the lost one stopped.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import schemas
from services.adjudicator.ruleset import RuleSet, load_ruleset
from services.adjudicator.state import EVIDENCE_KINDS
from services.bus.errors import BusError, BusUnavailableError
from services.bus.kafka import Delivery, KafkaBus
from services.bus.kafka_config import OUTPUT_KINDS
from services.events import Event, canonical_json, digest, utc_now
from services.files import private_dir, private_file
from services.state import MaintainedState
from services.state.maintained import STUDY_WIDE, TOUCHES_SUBJECTS, BaselineLoader
from services.state.records import IN_FORCE_ACTIONS
from services.stream.applied import AppliedLog, Identity, Position
from services.stream.changes import load_published, outcome_changes, remember
from services.stream.errors import StreamError

log = logging.getLogger(__name__)

REJOIN_S = 60.0
"""A member without partitions this long rejoins the group afresh (kafka-python can stall in a
join after the process was paused past the session timeout)."""


class AdjudicatorService:
    def __init__(
        self,
        bus: KafkaBus,
        applied: AppliedLog,
        rules: RuleSet | None = None,
        baseline: BaselineLoader | None = None,
        max_batch: int = 20_000,
        max_lag_s: float = 5.0,
    ) -> None:
        self.bus, self.log, self.rules = bus, applied, rules or load_ruleset()
        self.max_batch, self.max_lag_s = max_batch, max_lag_s
        self.consumer: Any = None
        self._guard = _single_instance(applied.root / "service.lock")
        _drop_orphaned_state(applied)
        applied.create()
        self.state = MaintainedState(applied.state_folder, applied, self.rules, baseline)
        self._unsure = True  # the outbox may be partly on Kafka (a crash, a failed send)
        self._beat_at = 0.0
        self._dirty_since: float | None = None
        self._unassigned_since: float | None = None
        self._load()
        self.stats = {"records": 0, "applied": 0, "dead_letters": 0, "outputs": 0, "batches": 0}

    def _load(self) -> None:
        """What the service keeps in memory, from its state: event ids applied, identities,
        the last published outcomes and the subjects still owed a publication."""
        self.seen = {
            kind: set(self.log.records(kind, columns=("event_id",)).collect()["event_id"])
            for kind in self.log.positions()
        }
        self.identities = {(k, s, r, v): (h, e) for k, s, r, v, h, e in self.log.identities()}
        self.published = load_published(self.log.records("outcome_change").collect())
        self.dirty: dict[str, set[str] | None] = self.log.dirty()
        applied = self.state.store.applied()
        if applied is None or applied.fingerprint != self.state.fingerprint:
            # the outcomes are recomputed in full (new state, other rules or code): compare
            # every study with what was published, so a changed outcome is published too
            self.dirty |= dict.fromkeys(self.log.studies())

    # lifecycle -----------------------------------------------------------------------------
    def connect(self) -> None:
        self.bus.ensure_topics()
        if not self.log.kafka_positions() and not self.log.rebuild_targets():
            self._begin_rebuild()
        self._flush()
        self.consumer = self.bus.subscribe(
            self.bus.config.adjudicator_group,
            self.bus.config.input_kinds(),
            on_assign=self._starts,
            max_records=self.max_batch,
            instance=f"adjudicator@{socket.gethostname()}",
        )

    def _begin_rebuild(self) -> None:
        """A new state: read back the outputs already published (so outcome changes continue
        their sequence and the conflict register its history), then say "rebuilding" until
        every input record is applied. Always, even over topics that look empty: Tansu can
        report an end offset of 0 for a partition that holds records."""
        ends = self.bus.end_offsets(self.bus.config.input_kinds())
        outputs, reached = self.bus.read_back(self.log.output_ends(), OUTPUT_KINDS)
        restored = self.log.restore(outputs, reached)
        self.log.begin_rebuild(ends)
        self._load()
        log.warning(
            "new state: rebuilding from the topics (at least %d input record(s)); "
            "%d output(s) read back",
            sum(ends.values()),
            restored,
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
        self.log.close()
        self._guard.close()

    # one batch -----------------------------------------------------------------------------
    def step(self, timeout_s: float = 1.0) -> int:
        """Apply what the next poll brings (growing the batch while records keep coming)."""
        self._flush()
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
        if not deliveries:
            self._end_rebuild()
            self._rejoin_if_stalled()
        self._beat()
        return len(deliveries)

    def _rejoin_if_stalled(self) -> None:
        if self.consumer.assigned:
            self._unassigned_since = None
            return
        now = time.monotonic()
        if self._unassigned_since is None:
            self._unassigned_since = now
        elif now - self._unassigned_since > REJOIN_S:
            log.warning("no partition assigned for %.0fs: joining the group again", REJOIN_S)
            self.consumer.close()
            self.consumer, self._unassigned_since = None, None

    def apply(self, deliveries: Sequence[Delivery], caught_up: bool = True) -> None:
        """Apply a batch; adjudicate the subjects touched since the last publication and
        publish their changes, unless more records are waiting (then at most ``max_lag_s``
        later): a bulk load is recomputed once, not once per batch."""
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
        if self.dirty and self._dirty_since is None:
            self._dirty_since = started
        if deliveries:
            self.log.apply(fresh + dead, applied, identities, outbox=dead, dirty=self.dirty)
        lag = started - (self._dirty_since or started)
        due = (caught_up or lag >= self.max_lag_s) and self._may_compute(deliveries)
        touched = self.dirty if due else {}
        outputs = self._publish(touched) if touched else 0
        self._flush()
        if applied:
            try:
                self.consumer.commit(applied)
            except BusError as exc:  # resume comes from the state: the commit is a hint
                log.info("consumer offsets not committed (%s); the state holds them", exc)
        self._count(len(deliveries), len(fresh), len(dead), outputs)
        log.info(
            "batch of %d record(s): %d applied, %d dead letter(s), %d output(s) for %s in %.0f ms",
            len(deliveries),
            len(fresh),
            len(dead),
            outputs,
            _subjects(touched) if touched else f"none yet ({_subjects(self.dirty)} pending)",
            1000 * (time.monotonic() - started),
        )

    def _publish(self, touched: dict[str, set[str] | None]) -> int:
        """Bring the maintained outcomes up to date and append the outcome changes of the
        touched subjects, clearing them in the same commit; returns how many outputs."""
        before = len(self.log.outbox())
        self.state.catch_up()  # its conflict changes join the outbox (AppliedLog.append)
        at = utc_now()
        changes: list[Event] = []
        for study, subjects in sorted(touched.items()):
            result = self.state.adjudication(study, subjects, tables=("tracts", "patients"))
            changes += outcome_changes(study, result, subjects, self.published, at)
        self.log.apply(changes, dirty={})  # outputs: queued by the log
        remember(self.published, changes)
        self.dirty, self._dirty_since = {}, None
        return len(self.log.outbox()) - before

    def _touch(self, event: Event) -> None:
        if event.kind in TOUCHES_SUBJECTS:
            subjects = self.dirty.setdefault(event.study, set())
            if subjects is not None:
                subjects.add(event.subject_id)
        elif event.kind in STUDY_WIDE and event.payload.get("action") in IN_FORCE_ACTIONS:
            self.dirty[event.study] = None  # the lock in force changes flags study-wide

    # Kafka ---------------------------------------------------------------------------------
    def _flush(self) -> None:
        """Send the outbox and mark it sent. After a crash or a failed send part of it may
        be on Kafka already: what is there is found by id and not sent again."""
        pending = self.log.outbox()
        if not pending:
            self._unsure = False
            return
        send = pending
        if self._unsure:
            found = self.bus.published_ids(
                self.log.output_ends(), sorted({e.kind for e in pending})
            )
            send = [e for e in pending if e.event_id not in found]
            log.info(
                "outbox: %d output(s), %d already on Kafka, sending %d",
                len(pending),
                len(pending) - len(send),
                len(send),
            )
        self._unsure = True
        landed = self.bus.send(send)
        ends: dict[Position, int] = {}
        for topic, partition, offset in landed:
            ends[(topic, partition)] = max(ends.get((topic, partition), 0), offset + 1)
        self.log.sent(pending, ends)
        self._unsure = False

    def _starts(self, assigned: list[Position]) -> dict[Position, int]:
        """Where each newly assigned partition resumes: the state's applied position (the
        beginning if it has none, so a lost state is rebuilt from the topics)."""
        applied = self.log.kafka_positions()
        inputs = self.bus.config.input_kinds()
        expected = sum(t.partitions for t in self.bus.config.topics if t.kind in inputs)
        if len(assigned) < expected:
            log.warning(
                "this instance holds %d of %d partitions: another adjudicator runs in group %s; "
                "run exactly one (the state must see every subject)",
                len(assigned),
                expected,
                self.bus.config.adjudicator_group,
            )
        return {p: applied[p] for p in assigned if p in applied}

    def _end_rebuild(self) -> None:
        """A poll found nothing more and every partition reached the end it had when the
        rebuild began: the state answers for the whole trial again."""
        targets = self.log.rebuild_targets()
        if not targets or self.dirty or self.consumer is None or not self.consumer.assigned:
            return
        if not self._behind_rebuild():
            self.log.end_rebuild()
            log.warning("rebuilt: %d record(s) applied", sum(self.log.kafka_positions().values()))

    def _may_compute(self, deliveries: Sequence[Delivery]) -> bool:
        """Outside a rebuild, always. During one, only on a poll that brought nothing, once
        every partition reached the end it had when the rebuild began (:meth:`_behind_rebuild`):
        those ends are the broker's word, and Tansu can report an end lower than what a
        partition holds (0 for one that holds records), so only a poll that finds nothing
        more says that every record the topics held is applied."""
        if not self.log.rebuild_targets():
            return True
        return not deliveries and not self._behind_rebuild()

    def _behind_rebuild(self) -> bool:
        """Rebuilding, and a partition has not reached the end it had when the rebuild began.
        The topics are read back in no order across kinds (a subject's MRI reads before its
        subject record), so outcomes computed now would raise conflicts (UNKNOWN_SUBJECT) that
        the rest of the records resolve, and the register would keep them: nothing is
        computed or published until every partition is there (and a poll finds nothing more:
        :meth:`_may_compute`)."""
        targets = self.log.rebuild_targets()
        if not targets:
            return False
        applied = self.log.kafka_positions()
        return any(applied.get(p, 0) < end for p, end in targets.items())

    # helpers -------------------------------------------------------------------------------
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


def _drop_orphaned_state(applied: AppliedLog) -> None:
    """Outcome tables without the log they were computed from (its folder deleted) describe
    events this service no longer holds: they go, and are rebuilt with the log."""
    if not applied.exists and applied.state_folder.exists():
        log.warning(
            "%s has no applied log beside it: dropped, it is rebuilt from the topics",
            applied.state_folder,
        )
        shutil.rmtree(applied.state_folder)


class _Guard:
    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def close(self) -> None:
        self._handle.close()


def _single_instance(path: Path) -> _Guard:
    """One service per state: a second one would interleave writes and outputs."""
    private_dir(path.parent)
    handle = private_file(path).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StreamError(
            f"another adjudicator service already runs on {path.parent} (pid {holder}); "
            "stop it first, or give this one its own --home"
        ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return _Guard(handle)
