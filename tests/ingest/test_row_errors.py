"""Row-level errors (DATA_TRANSFER.md, "Bad input"): the row is rejected with its file, line and
reason and kept as a dead letter; the other rows of the file go on.

Each case is a named file under ``cases/``; the table says what the CLI must report for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

import schemas

from .helpers import CASES, STUDY, event_log, ingest, payloads, platform, records

EXAM, INJECTION, MRI = "clinical_exam", "injection", "mri_read"
VISITS = "INJ1|INJ2|INJ3|FU1|FU2|FU3|FU4|FU5|FU6"
DEEP = "[" * 50 + "... (10000 characters)"  # long values are cut in a reason
NINES = "9" * 50 + "... (5000 characters)"
SURROGATE = (
    "holds a lone surrogate (an unpaired \\uD800-\\uDFFF escape), which is not a character; "
    "send valid Unicode text"
)
NON_CHARACTER = (
    "contains a Unicode non-character (U+FDD0..U+FDEF, U+FFFE, U+FFFF or another U+xFFFE, "
    "U+xFFFF), which is not text; remove it"
)


@dataclass(frozen=True)
class Case:
    file: str
    kind: str
    read: int
    accepted_lines: tuple[int, ...]
    rejected: tuple[tuple[int, str, str], ...]  # line, field, reason
    duplicates: int = 0
    before: str | None = None  # a case file ingested first, in the same home


CASES_TABLE = [
    # YYYY-MM-DD exactly; trailing blank lines are the end of the file, not rows.
    Case(
        "short_date_and_trailing_blank_lines.csv",
        EXAM,
        2,
        (2,),
        ((3, "exam_date", "exam_date must be a date YYYY-MM-DD, got 2025-1-1"),),
    ),
    Case(
        "bad_enum.csv",
        EXAM,
        3,
        (2, 4),
        ((3, "visit", f"visit must be one of {VISITS}, got FU7"),),
    ),
    Case(
        "bad_date.csv",
        EXAM,
        4,
        (2, 5),
        (
            (3, "exam_date", "exam_date must be a date YYYY-MM-DD, got 2025-02-30"),
            (4, "exam_date", "exam_date must be a date YYYY-MM-DD, got 03/01/2025"),
        ),
    ),
    Case(
        "out_of_range_grade.csv",
        EXAM,
        4,
        (2, 5),
        (
            (3, "discharge_grade", "discharge_grade must be 0-4, got 7"),
            (4, "discharge_grade", "discharge_grade must be 0-4, got -1"),
        ),
    ),
    Case(
        "missing_required.csv",
        EXAM,
        3,
        (2, 4),
        ((3, "examiner_id", "examiner_id is required; fill it in"),),
    ),
    Case(
        "missing_value.jsonl",
        MRI,
        4,
        (1, 4),
        (
            (2, "reader_id", "reader_id is required; fill it in"),
            (3, "scan_date", "scan_date is required; fill it in"),
        ),
    ),
    Case(
        "negative_size.jsonl",
        MRI,
        3,
        (1, 3),
        (
            (
                2,
                "collection_mm",
                "collection_mm sizes must be >= 0 (negative size), got [-3,4,5]",
            ),
        ),
    ),
    Case(
        "correction_without_reason.csv",
        EXAM,
        3,
        (2, 4),
        (
            (
                3,
                "change_reason",
                "change_reason is required for a correction (record_version 2); "
                "say why the record changed",
            ),
        ),
    ),
    Case(  # a deletion is a new version, so the correction's message comes first
        "deletion_without_reason.csv",
        EXAM,
        4,
        (2, 3),
        (
            (
                4,
                "change_reason",
                "change_reason is required for a correction (record_version 2); "
                "say why the record changed",
            ),
            (
                5,
                "change_reason",
                "change_reason is required when deleted = Y; say why the record is retired",
            ),
        ),
    ),
    Case(
        "conflicting_duplicate.csv",
        EXAM,
        4,
        (2, 3),
        (
            (
                4,
                "record_version",
                "conflicting duplicate: record_id EX-01 record_version 1 appears on line 2 "
                "with different content; send a new version with a change_reason",
            ),
        ),
        duplicates=1,
    ),
    Case(
        "conflicting_duplicate_of_earlier.csv",
        EXAM,
        3,
        (2,),
        (
            (
                3,
                "record_version",
                "conflicting duplicate: record_id EX-02 record_version 1 was already received "
                "with different content; send a new version with a change_reason",
            ),
        ),
        duplicates=1,
        before="earlier_ingest.csv",
    ),
    Case(
        "bad_boolean.csv",
        EXAM,
        4,
        (2, 5),
        (
            (
                3,
                "drains_on_compression",
                "drains_on_compression must be Y or N (true or false in JSON), got maybe",
            ),
            (4, "deleted", "deleted must be Y or N (true or false in JSON), got yes"),
        ),
    ),
    Case(
        "bad_boolean.jsonl",
        MRI,
        4,
        (1, 4),
        (
            (
                2,
                "t2_hyperintense",
                "t2_hyperintense must be Y or N (true or false in JSON), got yes",
            ),
            (3, "enhancement", "enhancement must be Y or N (true or false in JSON), got 1"),
        ),
    ),
    Case(
        "non_numeric_grade.csv",
        EXAM,
        4,
        (2, 5),
        (
            (3, "discharge_grade", "discharge_grade must be a whole number, got two"),
            (4, "discharge_grade", "discharge_grade must be a whole number, got 2.5"),
        ),
    ),
    Case(
        "non_numeric_volume.csv",
        INJECTION,
        3,
        (2, 4),
        ((3, "volume_ml", "volume_ml must be a number, got five"),),
    ),
    Case(
        "wrong_list_length.jsonl",
        MRI,
        4,
        (1, 4),
        (
            (2, "collection_mm", "collection_mm must have 3 numbers, got [30,25]"),
            (3, "collection_mm", "collection_mm must have 3 numbers, got [30,25,10,4]"),
        ),
    ),
    # Regressions: each of these crashed the run, poisoned the log or refused a good file.
    Case(  # nan, inf and 1e30 made the int cast raise: the whole run died with a traceback
        "non_finite_grade.csv",
        EXAM,
        5,
        (2, 6),
        (
            (3, "discharge_grade", "discharge_grade must be a whole number, got nan"),
            (4, "discharge_grade", "discharge_grade must be a whole number, got inf"),
            (5, "discharge_grade", "discharge_grade must be a whole number, got 1e30"),
        ),
    ),
    Case(  # inf was accepted and written to the log as `Infinity`, which is not JSON
        "non_finite_volume.csv",
        INJECTION,
        4,
        (2, 5),
        (
            (3, "volume_ml", "volume_ml must be a number, got inf"),
            (4, "volume_ml", "volume_ml must be a number, got NaN"),
        ),
    ),
    Case(  # [] made the list cast raise; a NaN version made the int cast raise
        "empty_list.jsonl",
        MRI,
        4,
        (1, 4),
        (
            (2, "collection_mm", "collection_mm must have 3 numbers, got []"),
            (3, "read_version", "read_version must be a whole number, got nan"),
        ),
    ),
    Case(  # a quoted value over two lines shifted every later line number by one
        "multiline_value.csv",
        EXAM,
        4,
        (2, 3, 6),
        ((5, "discharge_grade", "discharge_grade must be 0-4, got 7"),),
    ),
    Case(  # U+2028 and U+0085 inside JSON strings split the line: the file was refused
        "line_separators_in_text.jsonl",
        MRI,
        3,
        (1, 2, 3),
        (),
    ),  # Issue 10, item 3: each of these ended the run with a traceback.
    Case(  # _csv.Error: field larger than field limit (131072)
        "field_over_128k.csv",
        EXAM,
        3,
        (2, 4),
        (
            (
                3,
                "examiner_id",
                "examiner_id must be at most 64 characters, got 140000 characters; shorten it",
            ),
        ),
    ),
    Case(  # CR-only line ends (an old Mac export), a quoted value over two of them
        "cr_line_endings.csv",
        EXAM,
        4,
        (2, 3, 6),
        ((5, "discharge_grade", "discharge_grade must be 0-4, got 7"),),
    ),
    Case(  # RecursionError: a value nested 5,000 levels deep
        "deep_nesting.jsonl",
        MRI,
        4,
        (1, 4),
        (
            (2, "tract_id", f"tract_id must be a JSON string, got {DEEP}"),
            (3, "collection_mm", f"collection_mm must be null or a list of numbers, got {DEEP}"),
        ),
    ),
    Case(  # UnicodeEncodeError: "\ud800" decodes to half a character (a pair is fine)
        "lone_surrogate.jsonl",
        MRI,
        4,
        (1, 4),
        (
            (2, "reader_id", f"reader_id {SURROGATE}, got \\ud800x"),
            (3, "change_reason", f"change_reason {SURROGATE}, got fixed \\udc00"),
        ),
    ),
    Case(  # ValueError: a 5,000-digit integer exceeds Python's int-to-text limit
        "huge_integer.jsonl",
        MRI,
        4,
        (1, 4),
        (
            (2, "read_version", f"read_version must be 1-1000000, got {NINES}"),
            (
                3,
                "collection_mm",
                "collection_mm sizes must be <= 1000, got [" + "9" * 49 + "... (5006 characters)",
            ),
        ),
    ),
    Case(
        "huge_integer.csv",
        EXAM,
        4,
        (2, 5),
        (
            (3, "record_version", f"record_version must be 1-1000000, got {NINES}"),
            (4, "discharge_grade", f"discharge_grade must be 0-4, got {NINES}"),
        ),
    ),
    Case(  # not text: a non-character, a NUL byte; a tab inside a name is kept
        "non_characters.csv",
        EXAM,
        5,
        (2, 6),
        (
            (3, "examiner_id", f"examiner_id {NON_CHARACTER}"),
            (
                4,
                "entered_by",
                "entered_by contains the control character 0x00, which is not text; remove it",
            ),
            (5, "change_reason", f"change_reason {NON_CHARACTER}"),
        ),
    ),
    # Issue 10, item 4: short rows were accepted, the missing columns read as empty.
    Case(  # one field short (a live record, not deleted?), three short; a blank line is no row
        "short_rows.csv",
        EXAM,
        4,
        (2, 6),
        (
            (3, "deleted", "row has 13 of 14 fields: missing deleted"),
            (
                4,
                "entered_by",
                "row has 11 of 14 fields: missing entered_by, change_reason, deleted",
            ),
        ),
    ),
    # Issue 10, item 5: JSON types were not enforced ("Y" read as true, "1" and 1.0 as 1).
    Case(
        "type_confused.jsonl",
        MRI,
        9,
        (1, 9),
        (
            (
                2,
                "t2_hyperintense",
                't2_hyperintense must be true or false (a JSON boolean), got "Y"',
            ),
            (3, "read_version", 'read_version must be a JSON integer, got "1"'),
            (4, "read_version", "read_version must be a JSON integer, got 1.0"),
            (5, "tract_id", 'tract_id must be a JSON string, got {"a":1}'),
            (6, "reader_id", 'reader_id must be a JSON string, got ["x"]'),
            (
                7,
                "collection_mm",
                'collection_mm must be null or a JSON array of numbers, got "[1,2,3]"',
            ),
            (8, "deleted", 'deleted must be true or false (a JSON boolean), got "N"'),
        ),
    ),
]


@pytest.mark.parametrize("case", CASES_TABLE, ids=lambda c: c.file)
def test_row_error_is_rejected_kept_and_the_rest_goes_on(case: Case, tmp_path: Path) -> None:
    """The CLI reports each bad row by line, field and reason; it is kept as a dead letter
    (a ``rejected_row`` event with its raw values); the file's other rows are applied."""
    home = tmp_path / "home"
    if case.before:
        assert ingest(home, CASES / case.before, kind=case.kind).exit_code == 0
    run = ingest(home, CASES / case.file, kind=case.kind)

    assert run.exit_code == 0, run.stderr
    report = run.report(case.file)
    assert [(r["line"], r["field"], r["reason"]) for r in report["rejections"]] == list(
        case.rejected
    )
    assert (report["read"], report["accepted"], report["duplicates"], report["rejected"]) == (
        case.read,
        len(case.accepted_lines),
        case.duplicates,
        len(case.rejected),
    )

    applied = [p for p in payloads(home, case.kind) if p["source_file"] == case.file]
    assert sorted(p["source_line"] for p in applied) == list(case.accepted_lines)
    assert {p["ingest_run"] for p in applied} <= {report["ingest_run"]}

    letters = [p for p in payloads(home, "rejected_row") if p["file"] == case.file]
    assert [(p["line"], p["field"], p["reason"]) for p in letters] == list(case.rejected)
    for letter in letters:
        assert (letter["source_kind"], letter["ingest_run"]) == (case.kind, report["ingest_run"])
        raw = json.loads(letter["raw"])
        assert raw["subject_id"] == "S01"
        assert set(raw) == set(schemas.contract(case.kind).columns)


def test_text_output_names_file_line_and_reason(tmp_path: Path) -> None:
    """Without --json the CLI prints one line per rejected row: file, line, reason."""
    run = ingest(tmp_path / "home", CASES / "out_of_range_grade.csv", kind=EXAM, as_json=False)
    assert run.exit_code == 0
    assert run.stdout.splitlines() == [
        "out_of_range_grade.csv: read 4 = accepted 2 + duplicates 0 + rejected 2",
        "  rejected: out_of_range_grade.csv line 3: discharge_grade must be 0-4, got 7",
        "  rejected: out_of_range_grade.csv line 4: discharge_grade must be 0-4, got -1",
    ]


def test_dead_letters_belong_to_the_study(tmp_path: Path) -> None:
    """Dead letters are kept under the study the file was ingested for."""
    home = tmp_path / "home"
    ingest(home, CASES / "bad_enum.csv", kind=EXAM)

    with event_log(home) as log:
        assert log.records("rejected_row").collect()["study"].to_list() == [STUDY]


def test_log_holds_only_finite_numbers_after_non_finite_input(tmp_path: Path) -> None:
    """Regression: an accepted ``inf`` was stored (as ``Infinity``) and broke every later read."""
    home = tmp_path / "home"
    for case, kind in (("non_finite_volume.csv", INJECTION), ("non_finite_grade.csv", EXAM)):
        assert ingest(home, CASES / case, kind=kind).exit_code == 0
    with event_log(home) as log:
        for topic in log.positions():
            frame = log.records(topic).collect()
            for name, dtype in frame.schema.items():
                if dtype == pl.Float64:
                    assert frame[name].drop_nulls().is_finite().all(), (topic, name)
    with platform(home) as found:
        volumes = found.adjudicate(STUDY) and records(home, INJECTION)["volume_ml"]
    assert volumes.to_list() == [5.0, 4.5]
