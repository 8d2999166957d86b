"""The embedded columnar log: all-or-nothing appends, ids appended once, and loss that is loud.

Each fault is made by hand on a real home (a file removed, truncated or filled with garbage, an
index row deleted with sqlite3) and then the real CLI is run on it: it must refuse by name, with
exit code 1 and no traceback, and never answer with zeros or write on a damaged log.
"""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from services.events import make_event
from services.log import Batch, EventLog
from services.log.errors import LogDamagedError, NotALogError
from services.log.segment import batch_of_events
from tests.store.trials import STUDY

TRACT = str(Path(sys.executable).parent / "tract")


def tract(home: Path, *args: str) -> tuple[int, str]:
    """The installed ``tract`` as users run it; a traceback fails the test."""
    done = subprocess.run(
        [TRACT, "--home", str(home), *args], capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout + done.stderr


def access(n: int, study: str = "S") -> list:
    return [
        make_event(
            "access",
            study,
            "",
            {
                "access_id": f"a{i}",
                "who": "someone",
                "role": None,
                "action": "SIGN_IN",
                "outcome": "ALLOWED",
                "detail": None,
                "conflict_id": None,
                "subject_id": None,
                "tract_id": None,
                "path": "/",
                "client": None,
                "at": "2025-01-01T00:00:00Z",
            },
            f"a{i}",
        )
        for i in range(n)
    ]


def test_appends_are_dense_once_and_all_or_nothing(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "log")
    assert log.positions() == {} and not (tmp_path / "log").exists()  # reading creates nothing
    assert log.publish(access(3)) == 3
    assert log.publish(access(4)) == 1  # three ids were there already
    assert log.positions() == {"access": 4}
    assert log.records("access").collect()["offset"].to_list() == [0, 1, 2, 3]

    good = batch_of_events("access", "S", access(6)[4:])
    bad = Batch(
        "access", "S", pl.DataFrame({"event_id": ["x"], "subject_id": [""], "at": ["not a time"]})
    )
    with pytest.raises(Exception):  # noqa: B017 - any failure of the second batch
        log.append([good, bad])
    assert log.positions() == {"access": 4}  # the first batch did not land either
    assert sorted(p.name for p in (tmp_path / "log" / "segments").iterdir()) == [
        "000000000001.parquet",
        "000000000002.parquet",
    ]


def test_an_event_repeated_within_a_batch_is_appended_once(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "log")
    events = access(3)
    repeated = batch_of_events("access", "S", [*events, events[1], events[0]])
    # Even a batch vouched new (its ids not in the log) has its own repeats dropped.
    assert log.append([Batch("access", "S", repeated.frame, new=True)]) == 3
    assert log.records("access").collect()["access_id"].to_list() == ["a0", "a1", "a2"]


def test_files_are_private(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "home" / "log")
    log.publish(access(1))
    for path in (
        tmp_path / "home",
        tmp_path / "home" / "log",
        tmp_path / "home" / "log" / "segments",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in (tmp_path / "home" / "log").rglob("*"):
        if path.is_file() and path.name != "writer.lock":
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_a_crashed_append_leaves_nothing_that_is_read(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "log")
    log.publish(access(2))
    orphan = tmp_path / "log" / "segments" / "000000000002.parquet"
    orphan.write_bytes(b"half a segment")  # what an append killed before its commit leaves
    again = EventLog(tmp_path / "log")
    assert again.positions() == {"access": 2}
    again.publish(access(3))
    assert again.records("access").collect().height == 3
    assert again.head().seq == 2


@pytest.fixture
def home(decided_home: Path) -> Path:
    return decided_home


@pytest.fixture
def subjects_csv(tmp_path: Path) -> str:
    from services.demo.trial import write_demo_trial

    return str(write_demo_trial(tmp_path / "files")["subjects.csv"])


def _segments(home: Path) -> list[Path]:
    return sorted((home / "log" / "segments").iterdir())


def test_a_deleted_segment_is_named_not_answered_with_zeros(home: Path, subjects_csv: str) -> None:
    victim = _segments(home)[3]
    victim.unlink()
    for args in (
        ["outcomes", "--study", STUDY],
        ["conflicts", "--study", STUDY],
        ["report", "--study", STUDY],
    ):
        code, out = tract(home, *args)
        assert code == 1, (args, out)
        assert victim.name in out and "missing" in out
    code, out = tract(home, "ingest", "--study", STUDY, subjects_csv)
    assert code == 1 and "missing" in out


def test_a_zero_length_or_garbage_index_is_not_a_log(home: Path) -> None:
    index = home / "log" / "index.db"
    index.write_bytes(b"")
    code, out = tract(home, "outcomes", "--study", STUDY)
    assert code == 1 and "index.db is missing or empty" in out
    index.write_bytes(b"this is not SQLite at all" * 100)
    code, out = tract(home, "conflicts", "--study", STUDY)
    assert code == 1 and "index.db" in out and "damaged" in out


def test_committed_entries_removed_from_the_index_are_loud(home: Path, subjects_csv: str) -> None:
    """What a truncated journal would do: the last entries are gone from the index while HEAD
    (and the state) remember them."""
    with sqlite3.connect(home / "log" / "index.db") as db:
        last = db.execute("SELECT max(seq) FROM segments").fetchone()[0]
        db.execute("DELETE FROM segments WHERE seq >= ?", (last - 1,))
    code, out = tract(home, "outcomes", "--study", STUDY)
    assert code == 1 and "committed events are missing" in out
    code, out = tract(home, "ingest", "--study", STUDY, subjects_csv)
    assert code == 1 and "committed events are missing" in out


def test_a_lost_log_folder_is_not_taken_for_a_new_trial(home: Path, subjects_csv: str) -> None:
    import shutil

    shutil.rmtree(home / "log")
    code, out = tract(home, "ingest", "--study", STUDY, subjects_csv)
    assert code == 1 and "committed events are missing" in out
    assert not (home / "log" / "LOG").exists()  # nothing was written on it


def test_a_directory_where_the_writer_lock_goes_is_a_clear_error(
    home: Path, subjects_csv: str
) -> None:
    (home / "log" / "writer.lock").unlink(missing_ok=True)
    (home / "log" / "writer.lock").mkdir()
    code, out = tract(home, "ingest", "--study", STUDY, subjects_csv)
    assert code == 1 and "writer lock" in out


def test_a_foreign_folder_is_not_a_log(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "index.db").write_bytes(b"something else")
    with pytest.raises(NotALogError):
        EventLog(tmp_path / "log").positions()
    (tmp_path / "log" / "LOG").write_text('{"format": "another-tool"}')
    with pytest.raises(LogDamagedError):
        EventLog(tmp_path / "log").positions()


def test_an_earlier_per_event_home_is_named(tmp_path: Path) -> None:
    (tmp_path / "events.db").write_bytes(b"")
    code, out = tract(tmp_path, "outcomes", "--study", "X")
    assert code == 1 and "events.db" in out and "earlier tract" in out


class _WriterRightAfter:
    """The reader's index connection, with a writer that commits two more segments (and
    writes HEAD) right after the reader has read the index's new entries."""

    def __init__(self, db: sqlite3.Connection, writer: EventLog) -> None:
        self.db, self.writer, self.done = db, writer, False

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        cursor = self.db.execute(sql, *args)
        if "FROM segments WHERE seq >" in sql and not self.done:
            rows, self.done = cursor.fetchall(), True
            self.writer.publish(access(4)[2:3])
            self.writer.publish(access(4)[3:])
            return _Rows(rows)  # type: ignore[return-value]
        return cursor


class _Rows:
    def __init__(self, rows: list) -> None:
        self.rows = rows

    def fetchall(self) -> list:
        return self.rows


def test_a_reader_of_a_live_log_is_not_alarmed_by_a_writer_committing_meanwhile(
    tmp_path: Path,
) -> None:
    """A web server reads the log while the Kafka adjudicator appends to it: HEAD can move on
    between the reader's look at the index and its look at HEAD. That is no lost commit (found
    by the suite: test_kill_9_mid_stream_then_restart[noida] polled the service's log)."""
    writer = EventLog(tmp_path / "log")
    writer.publish(access(2)[:1])
    reader = EventLog(tmp_path / "log")
    assert reader.positions() == {"access": 1}
    writer.publish(access(2)[1:])
    reader._db = _WriterRightAfter(reader._db, EventLog(tmp_path / "log"))  # type: ignore[assignment]
    assert reader.positions() == {"access": 2}  # as far as the index it read: no alarm
    assert reader.positions() == {"access": 4} and reader.head().seq == 4  # the next look
