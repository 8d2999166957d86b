"""Property: whatever rows a file holds, every row ends up accepted, duplicate or rejected.

Hypothesis writes arbitrary clinical_exams.csv and mri_reads.jsonl files (valid and invalid
values mixed, awkward text, repeated ids and versions, exact repeats), ingests them with the
CLI and checks the outcome of every line against a small model of DATA_TRANSFER.md: invalid
rows are rejected on the field at fault, the first valid row of an id and version is
accepted, an identical repeat is a duplicate and a different one is rejected. Accepted rows
are in the log, rejected rows are dead letters, and the counts add up. A second run of the
same file accepts nothing new.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import schemas

from .helpers import ingest, payloads

SETTINGS = settings(max_examples=40, deadline=None)

# Text that survives the sources' trimming (letters at both ends) but carries separators,
# quotes, line breaks and Unicode line separators inside.
INNER = st.text(alphabet="aZ09 ,;\"'\n\t.é\u2028\u00a0-", max_size=8)
TEXT = st.builds(
    lambda a, m, b: f"{a}{m}{b}", st.sampled_from("AbX"), INNER, st.sampled_from("yZ1")
)
DATES = st.dates(date(2024, 1, 1), date(2026, 12, 31))
STAMPS = st.datetimes(datetime(2024, 1, 1), datetime(2026, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
)


@dataclass(frozen=True)
class Row:
    """One generated row: its values, and the field a model says is at fault (or None)."""

    values: dict[str, Any]
    fault: str | None
    key: tuple[str, int] | None  # id and version, when the row is valid
    version_field: str


def expected(rows: list[Row], lines: list[int]) -> tuple[set[int], set[int], list[tuple]]:
    """The model: (accepted lines, duplicate lines, rejected (line, field))."""
    first: dict[tuple[str, int], tuple] = {}
    accepted, duplicates, rejected = set(), set(), []
    for row, line in zip(rows, lines, strict=True):
        if row.fault:
            rejected.append((line, row.fault))
            continue
        content = tuple(sorted((k, json.dumps(v)) for k, v in row.values.items()))
        if row.key not in first:
            first[row.key] = content
            accepted.add(line)
        elif first[row.key] == content:
            duplicates.add(line)
        else:
            rejected.append((line, row.version_field))
    return accepted, duplicates, rejected


# -- clinical_exams.csv -----------------------------------------------------------------------

EXAM_VALID: dict[str, st.SearchStrategy[str]] = {
    "record_id": st.sampled_from(["EX-1", "EX-2", "EX-3"]),
    "record_version": st.sampled_from(["1", "2", "3"]),
    "subject_id": st.one_of(st.sampled_from(["S01", "S02"]), TEXT),
    "tract_id": st.sampled_from(["T1", "T2"]),
    "visit": st.sampled_from(schemas.contract("clinical_exam").field("visit").values),
    "exam_date": DATES.map(date.isoformat),
    "examiner_id": TEXT,
    "external_opening": st.sampled_from(["OPEN", "CLOSED"]),
    "drains_on_compression": st.sampled_from(["Y", "N"]),
    "discharge_grade": st.sampled_from(["", "0", "1", "2", "3", "4"]),
    "entered_at": STAMPS,
    "entered_by": TEXT,
    "change_reason": st.one_of(st.just(""), TEXT),
    "deleted": st.sampled_from(["N", "N", "Y"]),
}
NUMBER_JUNK = ["x", "2.5", "nan", "inf", "-inf", "1e30", "1,5"]
EXAM_INVALID: dict[str, list[str]] = {
    "record_id": ["", "  "],
    "record_version": ["0", "-1", *NUMBER_JUNK],
    "subject_id": [""],
    "tract_id": ["  "],
    "visit": ["FU7", "fu1", ""],
    "exam_date": ["2025-02-30", "2025/01/01", "20250101", ""],
    "examiner_id": [""],
    "external_opening": ["HALF", "open", ""],
    "drains_on_compression": ["maybe", "y", "1", ""],
    "discharge_grade": ["5", "-1", *NUMBER_JUNK],
    "entered_at": ["2025-01-01", "2025-01-01 12:00:00", "2025-13-01T00:00:00Z", ""],
    "entered_by": [""],
    "deleted": ["yes", "1"],
    "change_reason": [""],  # on a correction: made a fault below
}


@st.composite
def exam_row(draw: st.DrawFn) -> Row:
    values = {name: draw(strategy) for name, strategy in EXAM_VALID.items()}
    if values["record_version"] != "1" or values["deleted"] == "Y":
        values["change_reason"] = draw(TEXT)
    fault = draw(st.one_of(st.none(), st.none(), st.sampled_from(sorted(EXAM_INVALID))))
    if fault == "change_reason":
        values["record_version"] = draw(st.sampled_from(["2", "3"]))
    if fault:
        values[fault] = draw(st.sampled_from(EXAM_INVALID[fault]))
    key = None if fault else (values["record_id"], int(values["record_version"]))
    return Row(values, fault, key, "record_version")


@st.composite
def exam_rows(draw: st.DrawFn) -> list[Row]:
    """Fresh rows, exact repeats of earlier ones and the same id and version with new content."""
    rows: list[Row] = []
    for _ in range(draw(st.integers(1, 25))):
        how = draw(st.sampled_from(["new", "new", "new", "repeat", "change"]))
        valid = [r for r in rows if r.fault is None]
        if rows and how == "repeat":
            rows.append(draw(st.sampled_from(rows)))
        elif valid and how == "change":
            earlier = draw(st.sampled_from(valid))
            rows.append(replace(earlier, values=earlier.values | {"examiner_id": draw(TEXT)}))
        else:
            rows.append(draw(exam_row()))
    return rows


def write_csv(path: Path, rows: list[Row]) -> list[int]:
    """Write the rows with a header; return the line each row starts on."""
    columns = schemas.contract("clinical_exam").columns
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    lines, line = [], 2
    for row in rows:
        start = out.tell()
        writer.writerow([row.values[c] for c in columns])
        lines.append(line)
        line += out.getvalue()[start:].count("\n")
    path.write_text(out.getvalue(), encoding="utf-8")
    return lines


# -- mri_reads.jsonl --------------------------------------------------------------------------

SIZES = st.sampled_from([0, 5, 12.5, 20.25, 31])
FLAG = st.booleans()
MRI_VALID: dict[str, st.SearchStrategy[Any]] = {
    "read_id": st.sampled_from(["RD-1", "RD-2", "RD-3"]),
    "read_version": st.sampled_from([1, 2, 3]),
    "subject_id": st.one_of(st.sampled_from(["S01", "S02"]), TEXT),
    "tract_id": st.sampled_from(["T1", "T2"]),
    "timepoint": st.sampled_from(["MRI_BL", "MRI_FINAL"]),
    "scan_date": DATES.map(date.isoformat),
    "reader_id": TEXT,
    "reader_role": st.sampled_from(["R1", "R2", "ADJ"]),
    "image_quality": st.sampled_from(["ADEQUATE", "INADEQUATE"]),
    "t2_hyperintense": FLAG,
    "fibrotic": st.one_of(st.none(), FLAG),
    "contrast_given": st.one_of(st.none(), FLAG),
    "enhancement": st.one_of(st.none(), FLAG),
    "collection_mm": st.one_of(st.none(), st.lists(SIZES, min_size=3, max_size=3)),
    "read_at": STAMPS,
    "change_reason": st.one_of(st.none(), TEXT),
    "deleted": st.sampled_from([False, False, True]),
}
MRI_INVALID: dict[str, list[Any]] = {
    "read_id": [None, " "],
    "read_version": [0, -1, 1.5, "x", True, float("nan"), float("inf"), 1e30],
    "subject_id": [None],
    "timepoint": ["MRI_6M", "mri_bl", None],
    "scan_date": ["2025-02-30", 20250101, None],
    "reader_role": ["R3", "r1", None],
    "t2_hyperintense": ["yes", 1, None],
    "enhancement": ["no", 0],
    "collection_mm": [[-1, 2, 3], [1, 2], [], [1, 2, 3, 4], "abc", 5, [1, 2, "x"], [1, None, 2]],
    "read_at": ["2025-01-01", "yesterday", None],
    "deleted": ["no", 0],
    "change_reason": [None],  # on a correction: made a fault below
}


@st.composite
def mri_row(draw: st.DrawFn) -> Row:
    values = {name: draw(strategy) for name, strategy in MRI_VALID.items()}
    if values["read_version"] != 1 or values["deleted"]:
        values["change_reason"] = draw(TEXT)
    fault = draw(st.one_of(st.none(), st.none(), st.sampled_from(sorted(MRI_INVALID))))
    if fault == "change_reason":
        values["read_version"] = draw(st.sampled_from([2, 3]))
    if fault:
        values[fault] = draw(st.sampled_from(MRI_INVALID[fault]))
    key = None if fault else (values["read_id"], values["read_version"])
    return Row(values, fault, key, "read_version")


@st.composite
def mri_rows(draw: st.DrawFn) -> list[Row]:
    rows: list[Row] = []
    for _ in range(draw(st.integers(1, 25))):
        how = draw(st.sampled_from(["new", "new", "new", "repeat", "change"]))
        valid = [r for r in rows if r.fault is None]
        if rows and how == "repeat":
            rows.append(draw(st.sampled_from(rows)))
        elif valid and how == "change":
            earlier = draw(st.sampled_from(valid))
            rows.append(replace(earlier, values=earlier.values | {"reader_id": draw(TEXT)}))
        else:
            rows.append(draw(mri_row()))
    return rows


def write_jsonl(path: Path, rows: list[Row]) -> list[int]:
    """One JSON object per line, non-ASCII written as is; return each row's line."""
    text = "".join(json.dumps(r.values, ensure_ascii=False) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return list(range(1, len(rows) + 1))


# -- the property -----------------------------------------------------------------------------


Writer = Callable[[Path, list[Row]], list[int]]


def check_every_row_accounted_for(
    rows: list[Row], write: Writer, file: str, kind: str, text_fields: tuple[str, ...]
) -> None:
    """Ingest the rows twice with the CLI and hold every outcome against the model."""
    with tempfile.TemporaryDirectory() as tmp:
        home, path = Path(tmp) / "home", Path(tmp) / file
        lines = write(path, rows)
        want_accepted, want_duplicates, want_rejected = expected(rows, lines)

        run = ingest(home, path)
        assert run.exit_code == 0, run.stderr
        report = run.report(file)
        assert report["read"] == len(rows)
        assert report["read"] == report["accepted"] + report["duplicates"] + report["rejected"]
        assert [(r["line"], r["field"]) for r in report["rejections"]] == want_rejected
        assert report["duplicates"] == len(want_duplicates)

        applied = {p["source_line"]: p for p in payloads(home, kind)}
        assert set(applied) == want_accepted
        by_line = dict(zip(lines, rows, strict=True))
        for line, payload in applied.items():  # awkward text arrives exactly as sent
            sent = by_line[line].values
            assert {f: payload[f] for f in text_fields} == {f: sent[f] or None for f in text_fields}
            assert payload["ingest_run"] == report["ingest_run"]

        letters = {(p["file"], p["line"]): p for p in payloads(home, "rejected_row")}
        for rejection in report["rejections"]:
            letter = letters[(file, rejection["line"])]
            assert (letter["field"], letter["reason"]) == (rejection["field"], rejection["reason"])
            assert letter["ingest_run"] == report["ingest_run"]
        assert len(letters) == len(set(want_rejected))

        again = ingest(home, path).report(file)
        assert again["accepted"] == 0
        assert again["duplicates"] == report["accepted"] + report["duplicates"]
        assert again["rejected"] == report["rejected"]
        assert len(payloads(home, kind)) == len(applied)


@SETTINGS
@given(rows=exam_rows())
def test_every_exam_row_is_accepted_duplicate_or_rejected(rows: list[Row]) -> None:
    check_every_row_accounted_for(
        rows,
        write_csv,
        "clinical_exams.csv",
        "clinical_exam",
        ("record_id", "subject_id", "examiner_id", "entered_by", "change_reason"),
    )


@SETTINGS
@given(rows=mri_rows())
def test_every_mri_read_is_accepted_duplicate_or_rejected(rows: list[Row]) -> None:
    check_every_row_accounted_for(
        rows,
        write_jsonl,
        "mri_reads.jsonl",
        "mri_read",
        ("read_id", "read_version", "subject_id", "reader_id", "collection_mm"),
    )
