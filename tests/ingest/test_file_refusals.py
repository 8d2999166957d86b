"""File-level refusals (DATA_TRANSFER.md, "Bad input"): the whole file is refused with one
clear message naming the file and the problem, the CLI exits 2, and nothing from the file
reaches the event log.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import CASES, Run, ingest, ingest_process, payloads, positions

EXAM, MRI = "clinical_exam", "mri_read"
NOTHING_APPLIED = "Nothing from this file was applied."


@dataclass(frozen=True)
class Refusal:
    file: str
    kind: str | None
    problem: str
    process: bool = False  # run the installed console script instead of click's runner


REFUSALS = [
    Refusal("not_utf8.csv", EXAM, "not UTF-8 (byte 0xfc on line 3)", process=True),
    Refusal("empty.csv", EXAM, "the file is empty", process=True),
    Refusal("blank_lines_only.jsonl", MRI, "the file is empty"),
    Refusal("header_only.csv", EXAM, "the file has a header but no rows"),
    Refusal("missing_column.csv", EXAM, "missing column(s) discharge_grade"),
    Refusal("missing_key.jsonl", MRI, "missing column(s) collection_mm"),
    Refusal("unknown_column.csv", EXAM, "unknown column(s) notes"),
    Refusal("unknown_key.jsonl", MRI, "unknown column(s) comment"),
    # A row with more fields than the header cannot be aligned with the columns.
    Refusal("ragged_row.csv", EXAM, "malformed CSV (line 3 has 15 fields, the header has 14)"),
    # Regression: a repeated column was read as one, and the other value silently dropped.
    Refusal("duplicate_column.csv", EXAM, "column(s) visit appear more than once in the header"),
    Refusal(
        "broken_json_line.jsonl", MRI, "line 3 is not valid JSON (Expecting value)", process=True
    ),
    Refusal("non_object_line.jsonl", MRI, "line 2 is not a JSON object"),
    # A key twice in one object is ambiguous: json.loads would keep the last one silently.
    Refusal("repeated_key.jsonl", MRI, "line 1 has the key 'reader_role' more than once"),
    # A line 5,000 levels deep is not read into Python's recursion (RecursionError before).
    Refusal("deep_array_line.jsonl", MRI, "line 2 is not a JSON object"),
    # A quote opened and never closed would swallow the rest of the file into one value.
    Refusal(
        "unterminated_quote.csv",
        EXAM,
        "malformed CSV (the record starting on line 3: unexpected end of data)",
    ),
    Refusal("exams_export_2025.csv", None, "cannot tell the kind from the file name", process=True),
    Refusal("exams_export_2025.csv", "exam", "unknown kind 'exam'"),
]


def _run(refusal: Refusal, home: Path, *extra: Path) -> Run:
    run = ingest_process if refusal.process else ingest
    return run(home, CASES / refusal.file, *extra, kind=refusal.kind)


def _assert_refused(run: Run, refusal: Refusal) -> None:
    assert run.exit_code == 2, (run.stdout, run.stderr)
    refused = [line for line in run.stderr.splitlines() if line.startswith("refused: ")]
    assert len(refused) == 1, run.stderr
    assert refused[0].startswith(f"refused: {refusal.file}: {refusal.problem}")
    assert refused[0].endswith(NOTHING_APPLIED)
    entry = run.report(refusal.file)
    assert entry["refused"] == refused[0].removeprefix("refused: ")
    assert (entry["read"], entry["accepted"], entry["duplicates"], entry["rejected"]) == (
        0,
        0,
        0,
        0,
    )


@pytest.mark.parametrize(
    "refusal", REFUSALS, ids=lambda r: f"{r.file}-{r.kind}" if r.kind != EXAM else r.file
)
def test_refused_file_exits_2_and_applies_nothing(refusal: Refusal, tmp_path: Path) -> None:
    """Exit code 2, one message with the file and the problem, and an untouched event log."""
    home = tmp_path / "home"
    run = _run(refusal, home)
    _assert_refused(run, refusal)
    assert positions(home) == {}


@pytest.mark.parametrize("refusal", REFUSALS[:4], ids=lambda r: r.file)
def test_refusal_leaves_existing_log_untouched(refusal: Refusal, tmp_path: Path) -> None:
    """In a home that already holds data, a refused file adds not a single event."""
    home = tmp_path / "home"
    assert ingest(home, CASES / "earlier_ingest.csv", kind=EXAM).exit_code == 0
    assert ingest(home, CASES / "negative_size.jsonl", kind=MRI).exit_code == 0
    before = positions(home)

    _assert_refused(ingest(home, CASES / refusal.file, kind=refusal.kind), refusal)
    assert positions(home) == before


def test_other_files_of_the_run_go_on(tmp_path: Path) -> None:
    """A refused file does not stop the good files of the same invocation; exit code is 2."""
    home = tmp_path / "home"
    exams = tmp_path / "clinical_exams.csv"
    shutil.copy(CASES / "earlier_ingest.csv", exams)
    refusal = Refusal("not_utf8.csv", None, "not UTF-8")
    renamed = tmp_path / "send" / "clinical_exams.csv"
    renamed.parent.mkdir()
    shutil.copy(CASES / refusal.file, renamed)

    run = ingest_process(home, renamed, exams)

    assert run.exit_code == 2
    assert "refused: clinical_exams.csv: not UTF-8 (byte 0xfc on line 3)" in run.stderr
    good = [r for r in run.reports() if "refused" not in r]
    assert [(r["file"], r["accepted"]) for r in good] == [("clinical_exams.csv", 2)]
    applied = payloads(home, EXAM)
    assert [p["record_id"] for p in applied] == ["EX-01", "EX-02"]
    assert {p["ingest_run"] for p in applied} == {good[0]["ingest_run"]}


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    """A path that does not exist is refused by the CLI itself (exit 2) before anything runs."""
    run = ingest_process(tmp_path / "home", tmp_path / "clinical_exams.csv")
    assert run.exit_code == 2
    assert "clinical_exams.csv" in run.stderr
    assert "does not exist" in run.stderr
