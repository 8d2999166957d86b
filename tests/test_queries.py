"""Site queries (issue 13): every rejected row and every conflict a site must answer is a query;
a corrected row or the data answers it, the data manager closes it, a lock records the queries
still open and why it went ahead. Run on the demo trial (its 10 rejected rows are real)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from services.demo.trial import DEMO_STUDY
from services.lock.errors import LockBlockedError
from services.lock.lock import LockRequest, freeze_cut, materialise
from services.lock.snapshot import manifest_bytes
from services.platform import Platform
from services.queries import (
    ANSWERED,
    CLOSED,
    OPEN,
    QueryRefusedError,
    UnknownQueryError,
    check_action,
    queries_csv,
)
from tests.signing import PASSWORD_LINE, as_data_manager

REJECTED = 10  # the demo's rejected rows: a bad clock, grade, date, visit, examiner ...
TRACT = str(Path(sys.executable).parent / "tract")
SITE_CONFLICTS = 4  # UNMATCHED_TRACT x2, INCONSISTENT_EXAM, MISSING_ASSESSMENT (of 7)


@pytest.fixture
def platform(open_home: Path) -> Platform:
    return Platform.embedded(open_home)


def _exam_v2(platform: Platform, record_id: str, folder: Path, **changes: object) -> Path:
    """A corrected version of an accepted exam record, as the site would send it."""
    exams = platform.records("clinical_exam", DEMO_STUDY).collect()
    row = exams.filter(pl.col("record_id") == record_id).sort("record_version").row(-1, named=True)
    header = [c for c in row if c not in ("offset", "event_id")]
    values = (
        row
        | {
            "record_version": row["record_version"] + 1,
            "change_reason": "re-sent after the data manager's query",
            "drains_on_compression": "Y" if row["drains_on_compression"] else "N",
            "deleted": "N",
            "entered_at": "2025-02-01T10:00:00Z",
        }
        | changes
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([header, ["" if values[c] is None else values[c] for c in header]])
    path = folder / "clinical_exams.csv"
    path.write_text(out.getvalue())
    return path


def by_record(queries: pl.DataFrame, record: str) -> dict:
    return queries.filter(pl.col("record") == record).row(0, named=True)


def test_every_rejected_row_and_site_conflict_is_a_query(platform: Platform) -> None:
    queries = platform.queries(DEMO_STUDY)
    assert queries.filter(pl.col("source") == "rejected_row").height == REJECTED
    assert queries.filter(pl.col("source") == "conflict").height == SITE_CONFLICTS
    assert set(queries["status"]) == {OPEN}
    assert set(queries["site_id"]) == {"SITE01"}
    missing_examiner = by_record(queries, "clinical_exam EX-BAD-EXAMINER v1")
    assert missing_examiner["subject_id"] == "S09" and missing_examiner["addressed_to"] == "site"
    assert "examiner_id is required" in missing_examiner["question"]
    read = by_record(queries, "mri_read RD-BAD-ROLE v1")
    assert read["addressed_to"] == "imaging core lab"
    missing = queries.filter(pl.col("topic") == "MISSING_ASSESSMENT").row(0, named=True)
    assert "missing: missing" not in missing["question"]  # the engine's repeat is tidied


def test_a_corrected_row_answers_a_conflicting_duplicate(platform: Platform, tmp_path) -> None:
    record = "clinical_exam EX-S07-T1-FU1 v1"
    assert by_record(platform.queries(DEMO_STUDY), record)["status"] == OPEN
    outcome = platform.ingest(DEMO_STUDY, [_exam_v2(platform, "EX-S07-T1-FU1", tmp_path)])
    assert outcome.reports[0].accepted == 1
    query = by_record(platform.queries(DEMO_STUDY), record)
    assert query["status"] == ANSWERED
    assert query["answer"] == "corrected row accepted: clinical_exam EX-S07-T1-FU1 v2"


def test_the_data_manager_records_answers_closes_and_reopens(platform: Platform) -> None:
    record = "clinical_exam EX-BAD-VISIT v1"
    qid = by_record(platform.queries(DEMO_STUDY), record)["query_id"]
    with pytest.raises(QueryRefusedError, match="no answer yet"):
        platform.act_on_query(DEMO_STUDY, qid, CLOSED, "", "dm.jones")
    platform.act_on_query(DEMO_STUDY, qid, ANSWERED, "FU7 was a typo for FU6", "dm.jones")
    query = by_record(platform.queries(DEMO_STUDY), record)
    assert query["status"] == ANSWERED and "FU7 was a typo for FU6" in query["answer"]
    platform.act_on_query(DEMO_STUDY, qid, CLOSED, "", "dm.jones")
    assert by_record(platform.queries(DEMO_STUDY), record)["status"] == CLOSED
    platform.act_on_query(DEMO_STUDY, qid, "REOPENED", "the corrected row never came", "dm.jones")
    query = by_record(platform.queries(DEMO_STUDY), record)
    assert query["status"] == OPEN and query["last_note"] == "the corrected row never came"
    with pytest.raises(UnknownQueryError, match="no query Q-0 in study DEMO"):
        platform.act_on_query(DEMO_STUDY, "Q-0", CLOSED, "x", "dm.jones")
    trail = platform.audit(DEMO_STUDY).filter(pl.col("kind") == "site_query")
    assert trail["action"].to_list() == ["ANSWERED", "CLOSED", "REOPENED"]
    assert set(trail["who"]) == {"dm.jones"}


def test_a_reopened_query_is_answered_again_only_by_a_new_answer(
    platform: Platform, tmp_path
) -> None:
    record = "clinical_exam EX-S07-T1-FU1 v1"
    platform.ingest(DEMO_STUDY, [_exam_v2(platform, "EX-S07-T1-FU1", tmp_path)])
    qid = by_record(platform.queries(DEMO_STUDY), record)["query_id"]
    platform.act_on_query(DEMO_STUDY, qid, "REOPENED", "v2 still has the wrong date", "dm.jones")
    assert by_record(platform.queries(DEMO_STUDY), record)["status"] == OPEN
    again = tmp_path / "again"
    again.mkdir()
    platform.ingest(DEMO_STUDY, [_exam_v2(platform, "EX-S07-T1-FU1", again)])
    query = by_record(platform.queries(DEMO_STUDY), record)
    assert query["status"] == ANSWERED and query["answer"].endswith("EX-S07-T1-FU1 v3")


def test_actions_the_state_does_not_allow_say_what_to_do() -> None:
    base = {"status": OPEN}
    with pytest.raises(QueryRefusedError, match="write the site's answer"):
        check_action(base, ANSWERED, "  ")
    with pytest.raises(QueryRefusedError, match="already open"):
        check_action(base, "REOPENED", "why")
    with pytest.raises(QueryRefusedError, match="reopen it before recording an answer"):
        check_action({"status": CLOSED}, ANSWERED, "late answer")
    assert check_action({"status": ANSWERED}, CLOSED, "") == "answer reviewed and accepted"


def test_the_sites_csv_is_safe_in_a_spreadsheet(platform: Platform) -> None:
    queries = platform.queries(DEMO_STUDY).with_columns(question=pl.lit("=HYPERLINK(1)"))
    rows = list(csv.DictReader(io.StringIO(queries_csv(queries))))
    assert len(rows) == REJECTED + SITE_CONFLICTS
    assert rows[0]["question"] == "'=HYPERLINK(1)"
    assert list(rows[0])[:4] == ["site_id", "subject_id", "tract_id", "query_id"]


def test_a_lock_records_the_queries_still_open_and_why(decided_home: Path) -> None:
    platform = Platform.embedded(decided_home)
    manifest = platform.lock(
        DEMO_STUDY, "L1", "primary analysis", "dm.jones", open_queries_reason="sites answer later"
    )
    recorded = json.loads(manifest_bytes(platform.store, DEMO_STUDY, "L1"))["open_queries"]
    assert manifest["open_queries"] == recorded
    # the 10 rejected rows wait for the sites; the 4 decided site conflicts are answered
    assert (recorded["not_closed"], recorded["open"], recorded["answered"]) == (14, 10, 4)
    assert recorded["by_site"] == {"SITE01": 14} and recorded["reason"] == "sites answer later"
    assert len(recorded["query_ids"]) == 14


def test_a_lock_with_queries_not_closed_needs_a_reason(decided_home: Path) -> None:
    """Issue 13: only the web page asked why; `tract lock`, the library and the DAG locked
    with open queries and recorded "no reason given"."""
    platform = Platform.embedded(decided_home)
    for reason in ("", "   "):
        with pytest.raises(LockBlockedError) as refused:
            platform.lock(
                DEMO_STUDY, "L1", "primary analysis", "dm.jones", open_queries_reason=reason
            )
        assert "14 site queries are not closed (SITE01: 14)" in str(refused.value)
        assert "tract queries list --study DEMO" in str(refused.value)
        assert "--open-queries-reason" in str(refused.value)
    assert platform.records("lock", DEMO_STUDY).collect().is_empty()  # the id was not claimed
    manifest = platform.lock(
        DEMO_STUDY, "L1", "other words", "dm.smith", open_queries_reason="sites answer later"
    )
    assert manifest["requested_by"] == "dm.smith"
    assert manifest["open_queries"]["reason"] == "sites answer later"


def test_a_query_raised_after_the_check_is_caught_at_the_cut(decided_home: Path) -> None:
    """The queries are counted again on the data the lock freezes, as conflicts are."""
    platform = Platform.embedded(decided_home)
    sources = platform.lock_sources()
    request = LockRequest(DEMO_STUDY, "L1", "primary analysis", "dm.jones")
    cut = freeze_cut(sources, request)  # as if the queries were closed when it was checked
    with pytest.raises(LockBlockedError, match="14 site queries are not closed"):
        materialise(sources, request, cut, decided_home / "staging")
    assert not (decided_home / "staging").exists()
    answered = LockRequest(
        DEMO_STUDY, "L1", "primary analysis", "dm.jones", open_queries_reason="sites answer later"
    )
    staged = materialise(sources, answered, cut, decided_home / "staging")
    assert json.loads((staged / "manifest.json").read_text())["open_queries"]["not_closed"] == 14


def test_tract_lock_without_a_reason_names_the_queries_and_the_option(decided_home: Path) -> None:
    signed = as_data_manager(decided_home)

    def lock(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TRACT, "--home", str(decided_home), "lock", "--study", DEMO_STUDY, "--lock-id",
             "L1", "--reason", "primary analysis", *signed, *extra],
            capture_output=True, text=True, timeout=120, check=False, input=PASSWORD_LINE,
        )  # fmt: skip

    refused = lock()
    assert refused.returncode == 1 and "14 site queries are not closed" in refused.stderr
    assert "--open-queries-reason" in refused.stderr and "Traceback" not in refused.stderr
    locked = lock("--open-queries-reason", "sites answer after the primary analysis")
    assert locked.returncode == 0, locked.stderr
    assert (
        "site queries not closed at the lock: 14 "
        "(reason recorded: sites answer after the primary analysis)" in locked.stdout
    )


def test_only_a_data_manager_proved_by_password_acts_on_a_query(decided_home: Path) -> None:
    """Issue 13, found as an insider: `tract queries close Q --by ghost` closed a query under
    a name nobody had; closing queries is how a lock avoids giving its reason."""

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TRACT, "--home", str(decided_home), *args],
            capture_output=True, text=True, timeout=120, input=stdin, check=False,
        )  # fmt: skip

    for name, role in (("dm.jones", "data_manager"), ("dr.adams", "committee")):
        added = cli("users", "add", name, "--role", role, "--full-name", name.title(),
                    "--password-stdin", stdin="an administrator's password\n")  # fmt: skip
        assert added.returncode == 0, added.stderr
        chosen = cli("password", "--as", name, "--password-stdin",
                     stdin="an administrator's password\ntheir own password\n")  # fmt: skip
        assert chosen.returncode == 0, chosen.stderr
    query = Platform.embedded(decided_home).queries(DEMO_STUDY)["query_id"][0]
    close = ("queries", "close", query, "--note", "site confirmed by phone", "--password-stdin")
    assert "No such option '--by'" in cli(*close[:-1], "--by", "dm.jones").stderr
    for who, password in (
        ("ghost", "their own password"),  # nobody
        ("dr.adams", "their own password"),  # a committee member
        ("dm.jones", "a guess"),  # the data manager's name without their password
    ):
        refused = cli(*close, "--as", who, stdin=password + "\n")
        assert refused.returncode == 1 and "signature refused" in refused.stderr
    platform = Platform.embedded(decided_home)
    queries = platform.queries(DEMO_STUDY)
    assert queries.filter(pl.col("query_id") == query)["status"].to_list() == [OPEN]
    refusals = platform.audit(DEMO_STUDY).filter(pl.col("action") == "QUERY REFUSED")
    assert sorted(refusals["who"]) == ["dm.jones", "dr.adams", "ghost"]

    unanswered = cli("queries", "close", query, "--as", "dm.jones", "--password-stdin")
    assert "why you close it unanswered" in unanswered.stderr  # before a password is asked
    closed = cli(*close, "--as", "dm.jones", stdin="their own password\n")
    assert closed.returncode == 0 and f"{query}: closed by dm.jones" in closed.stdout
