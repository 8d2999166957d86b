"""The adjudicator service's applied state: its bookkeeping commits with its events, and what
it still owes survives a restart."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from services.log.verify import verify_log
from services.stream.applied import AppliedLog
from services.stream.frames import batches_of
from tests.bus.samples import sample_event


def test_subjects_pending_publication_survive_a_restart(tmp_path: Path) -> None:
    pending = {"STUDY-A": {"S02", "S01"}, "STUDY-B": None}  # None: the whole study
    AppliedLog.at(tmp_path).apply([], {("clinical_exam", 0): 7}, dirty=pending)

    reopened = AppliedLog.at(tmp_path)
    assert reopened.dirty() == {"STUDY-A": {"S01", "S02"}, "STUDY-B": None}
    assert reopened.kafka_positions() == {("clinical_exam", 0): 7}

    reopened.apply([], {("clinical_exam", 0): 9}, dirty={})  # published: nothing owed
    assert AppliedLog.at(tmp_path).dirty() == {}


def test_a_batch_and_its_bookkeeping_are_one_chained_commit(tmp_path: Path) -> None:
    applied = AppliedLog.at(tmp_path)
    exams = [sample_event("clinical_exam", i, subject=f"S{i}") for i in range(3)]
    outputs = [sample_event("outcome_change", 1, subject="S1")]
    applied.apply(exams + outputs, {("tract.clinical_exam", 2): 40}, outbox=outputs)

    assert applied.positions() == {"clinical_exam": 3, "outcome_change": 1}
    assert [e.event_id for e in applied.outbox()] == [outputs[0].event_id]
    positions, head = applied.cut()
    assert positions == {
        "clinical_exam": 3,
        "outcome_change": 1,
        "kafka/tract.clinical_exam/2": 40,
    }
    verdict = verify_log(applied.folder)  # what `tract verify` walks on Kafka
    assert verdict.intact and verdict.events == 4
    assert (verdict.head_seq, verdict.head_hash) == (head.seq, head.hash)

    applied.sent(outputs, {("tract.outcomes", 0): 1})
    assert applied.outbox() == [] and applied.output_ends() == {("tract.outcomes", 0): 1}


def test_bookkeeping_that_fails_takes_the_batch_with_it(tmp_path: Path) -> None:
    """EventLog.append's ``extra`` commits or rolls back with the segments."""
    applied = AppliedLog.at(tmp_path)
    applied.apply([sample_event("subject", 0)], {("tract.subject", 0): 1})
    before = (applied.positions(), applied.head(), applied.kafka_positions())

    def broken(db: sqlite3.Connection) -> None:
        db.execute("UPDATE kafka_applied SET next_offset = 2")
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError):
        applied.append(batches_of([sample_event("subject", 1, subject="S2")]), broken)
    reopened = AppliedLog.at(tmp_path)
    assert (reopened.positions(), reopened.head(), reopened.kafka_positions()) == before
    assert len(list((applied.folder / "segments").glob("*.parquet"))) == 1
    assert verify_log(applied.folder).intact


def test_outputs_are_queued_once_and_read_back_ones_never(tmp_path: Path) -> None:
    """Any append of an output kind queues it (the maintained state's conflict changes too),
    but only the outputs new to the log: one already there was queued, maybe sent, before."""
    applied = AppliedLog.at(tmp_path)
    conflict = sample_event("conflict_change", 1, subject="S1")
    applied.publish([conflict])
    assert [e.event_id for e in applied.outbox()] == [conflict.event_id]

    applied.sent(applied.outbox(), {("tract.conflicts", 0): 1})
    applied.publish([conflict])  # the register records the same change again
    assert applied.outbox() == [] and applied.positions() == {"conflict_change": 1}

    outcome = sample_event("outcome_change", 2, subject="S2")
    assert applied.restore([outcome], {("tract.outcomes", 0): 1}) == 1  # on Kafka already
    assert applied.outbox() == [] and applied.positions()["outcome_change"] == 1


def test_the_services_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """The applied log, the service's lock and the watcher's ledger (file names, reports)."""
    from services.drop_folder import Ledger
    from services.stream.service import _single_instance

    loose = os.umask(0)
    try:
        applied = AppliedLog.at(tmp_path)
        applied.apply([sample_event("subject", 0)], {("tract.subject", 0): 1})
        guard = _single_instance(applied.root / "service.lock")
        Ledger(tmp_path)
    finally:
        os.umask(loose)
    guard.close()
    for path in (applied.root, applied.folder, tmp_path / "ingest"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in (applied.folder / "index.db", applied.root / "service.lock"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "ingest" / "watch.db").stat().st_mode) == 0o600
