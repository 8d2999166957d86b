"""The reader's ways through a file give the same rows.

A CSV file is read one of three ways (clean, framed by line, record by record) and a JSON
Lines line one of two (vectorised, or parsed in Python); which one depends on the file's
shape, never on its values. Hypothesis writes the same records in shapes that force each
way and checks that the text, JSON types and lines come out the same.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from services.ingest.errors import FileRefusedError
from services.ingest.read import JSON_TYPES, LINE, read_rows

EXAM = schemas.contract("clinical_exam")
MRI = schemas.contract("mri_read")
SETTINGS = settings(max_examples=60, deadline=None)

# Text with what trimming, quoting, escaping and splitting could get wrong.
TEXT = st.text(
    alphabet=st.sampled_from(
        [*"aZ09 ,;\"'\\/{}[]:.é", "\t", "\u00a0", "\u2028", "\u0085", "\u3000", "😀", "\x1c"]
    ),
    max_size=10,
)
NUMBER = st.one_of(
    st.integers(-5, 10**6).map(str),
    st.sampled_from(["1.0", "1e0", "-0", "12.50", "9" * 40, "1E-2"]),
)


@st.composite
def exam_values(draw: st.DrawFn) -> list[str]:
    return [draw(st.one_of(TEXT, NUMBER, st.just(""))) for _ in EXAM.columns]


def write_csv(rows: list[list[str]], quoting: int, extra: list[str] | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, quoting=quoting, lineterminator="\n")
    writer.writerow(EXAM.columns)
    for row in rows:
        writer.writerow(row)
    if extra is not None:
        writer.writerow(extra)
    return out.getvalue()


def read(text: str, contract: schemas.Contract, name: str) -> pl.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(text.encode("utf-8"))
        return read_rows(path, contract)


@SETTINGS
@given(rows=st.lists(exam_values(), min_size=1, max_size=8))
def test_csv_ways_agree(rows: list[list[str]]) -> None:
    # No line breaks in values: the clean way can read every row.
    rows = [[v.replace("\u2028", " ").replace("\u0085", " ") for v in row] for row in rows]
    clean = read(write_csv(rows, csv.QUOTE_MINIMAL), EXAM, "clinical_exams.csv")
    # A blank line after the header (rows move down one line): framed by line.
    text = write_csv(rows, csv.QUOTE_ALL)
    header, body = text.split("\n", 1)
    framed = read(f"{header}\n\n{body}", EXAM, "clinical_exams.csv")
    # A last row with a value over two lines: record by record.
    spanning = read(
        write_csv(rows, csv.QUOTE_MINIMAL, ["two\nlines"] * len(EXAM.columns)),
        EXAM,
        "clinical_exams.csv",
    )

    assert clean[LINE].to_list() == list(range(2, len(rows) + 2))
    assert framed[LINE].to_list() == list(range(3, len(rows) + 3))
    assert spanning[LINE].to_list()[:-1] == clean[LINE].to_list()
    columns = list(EXAM.columns)
    assert framed.select(columns).equals(clean.select(columns))
    assert spanning.head(len(rows)).select(columns).equals(clean.select(columns))


ASCII_TEXT = st.text(alphabet=st.sampled_from([*"aZ09 ;'/:.", "\t", "\x0b", "\x0c"]), max_size=6)


@SETTINGS
@given(
    rows=st.lists(st.lists(ASCII_TEXT, min_size=14, max_size=14), min_size=1, max_size=8),
    tabs=st.booleans(),
)
def test_a_plain_csv_file_is_trimmed_as_the_record_by_record_way_trims_it(
    rows: list[list[str]], tabs: bool
) -> None:
    # Unquoted ASCII: the clean way trims only the columns with white space at an edge.
    if not tabs:
        rows = [[v.translate({9: 32, 11: 32, 12: 32}) for v in row] for row in rows]
    clean = read(write_csv(rows, csv.QUOTE_MINIMAL), EXAM, "clinical_exams.csv")
    spanning = read(
        write_csv(rows, csv.QUOTE_MINIMAL, ["two\nlines"] * len(EXAM.columns)),
        EXAM,
        "clinical_exams.csv",
    )
    columns = list(EXAM.columns)
    assert spanning.head(len(rows)).select(columns).equals(clean.select(columns))


def test_a_plain_csv_file_keeps_its_values_and_trims_only_edges() -> None:
    header = ",".join(EXAM.columns)
    rows = [
        "EX-1,1,S-1,T1,INJ1,2025-01-01,E 1,OPEN,Y,1,,crc,a reason,N",
        "EX-2,1, S-2 ,T1,   ,,,,,,,,,",
    ]
    read_back = read("\n".join([header, *rows]) + "\n", EXAM, "clinical_exams.csv")
    assert read_back["subject_id"].to_list() == ["S-1", "S-2"]
    assert read_back["visit"].to_list() == ["INJ1", None]  # only spaces: empty, so null
    assert read_back["examiner_id"].to_list() == ["E 1", None]  # a space inside is kept
    assert read_back["change_reason"].to_list() == ["a reason", None]


@st.composite
def mri_record(draw: st.DrawFn) -> dict[str, object]:
    def value() -> object:
        return draw(
            st.one_of(
                TEXT,
                st.integers(-5, 10**20),
                st.floats(allow_nan=False, allow_infinity=False),
                st.booleans(),
                st.none(),
                st.lists(st.one_of(st.integers(0, 99), st.floats(0, 99)), max_size=4),
            )
        )

    return {name: value() for name in MRI.columns}


@SETTINGS
@given(records=st.lists(mri_record(), min_size=1, max_size=8), ascii_only=st.booleans())
def test_jsonl_ways_agree(records: list[dict[str, object]], ascii_only: bool) -> None:
    compact = "\n".join(json.dumps(r, ensure_ascii=ascii_only) for r in records) + "\n"
    # Each line with its keys in a different order from the others: Python reads them.
    shuffled = "\n".join(
        json.dumps(dict(list(r.items())[n % 17 :] + list(r.items())[: n % 17]), ensure_ascii=True)
        for n, r in enumerate(records)
    )
    fast = read(compact, MRI, "mri_reads.jsonl")
    slow = read(shuffled + "\n", MRI, "mri_reads.jsonl")

    assert fast[LINE].to_list() == list(range(1, len(records) + 1))
    assert fast.equals(slow), (fast.to_dicts(), slow.to_dicts())
    assert fast[JSON_TYPES].struct.field("read_id").is_not_null().all()


def test_jsonl_blank_lines_of_any_white_space_are_skipped_and_lines_keep_their_numbers() -> None:
    record = {name: None for name in MRI.columns} | {"read_id": "R-é😀", "read_version": 1}
    line = json.dumps(record, ensure_ascii=False)
    # U+3000 and U+00A0 are white space (a blank line); U+001C is not (a row, refused as JSON).
    text = f"{line}\n\u3000 \t\n\u00a0\n{line.replace('R-é', 'R-2')}\n"
    rows = read(text, MRI, "mri_reads.jsonl")
    assert rows[LINE].to_list() == [1, 4]
    assert rows["read_id"].to_list() == ["R-é😀", "R-2😀"]
    assert rows["read_version"].to_list() == ["1", "1"]
    with pytest.raises(FileRefusedError, match="line 2 is not valid JSON"):
        read(f"{line}\n\x1c\n", MRI, "mri_reads.jsonl")
