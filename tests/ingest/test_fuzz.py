"""Fuzz: whatever a site sends, ``tract ingest`` refuses the file or accounts for every row.

Hypothesis writes transfer files of every kind from the contracts: valid values mixed with
hostile ones (control characters, non-characters, lone surrogates, 200 KB values, 5,000-digit
numbers, NaN, 3,000-level nesting, values of the wrong JSON type), short rows, quoting, blank
lines, LF, CR LF and CR line ends, a byte-order mark, and now and then something that must
refuse the file (an extra field, a repeated or unknown key, a broken line). Each file is
ingested with the CLI into a study that already holds a small trial, and for every file:

- the CLI exits 0 or 2, never with a traceback (click's runner re-raises exceptions);
- a refused file applies nothing; otherwise read = accepted + duplicates + rejected, every
  row is counted on the line it starts on, and each rejection is a dead letter;
- no rejected row reaches the log, and so no outcome;
- the study still adjudicates (``tract outcomes --json`` exits 0).

The issue's named cases run through the same checks as fixed regressions.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from schemas import Field
from services.cli import cli

from .helpers import CASES, STUDY, Run, ingest, payloads, positions

SETTINGS = settings(
    # About a minute here; TRACT_FUZZ_EXAMPLES=500 for a longer hunt.
    max_examples=int(os.environ.get("TRACT_FUZZ_EXAMPLES", "45")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CONTRACTS = {c.kind: c for c in schemas.source_contracts().values()}
CSV_KINDS = sorted(k for k, c in CONTRACTS.items() if c.source and c.source.format == "csv")
JSON_KINDS = sorted(k for k, c in CONTRACTS.items() if c.source and c.source.format == "jsonl")

# -- values -----------------------------------------------------------------------------------

AWKWARD = st.text(
    alphabet=st.sampled_from([*"aZ09 ,;\"'\n\t.é-", "\u2028", "\u0085", "\u00a0", "😀"]),
    max_size=8,
).map(lambda inner: f"A{inner}z")
IDS = st.sampled_from(["X-1", "X-2", "X-3"])
SUBJECTS = st.sampled_from(["S01", "S02", "S03", "S04", "S05", "S99"])
TRACTS = st.sampled_from(["T1", "T2", "T9"])
DATES = st.dates(date(2024, 1, 1), date(2026, 12, 31)).map(date.isoformat)
STAMPS = st.datetimes(datetime(2024, 1, 1), datetime(2026, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
)
HOSTILE_TEXT = [
    "",
    "   ",
    "x" * 200_000,
    "9" * 5000,
    "-0",
    "+1",
    "1.0",
    "1e400",
    "nan",
    "-inf",
    "2025-02-30",
    "2025-01-01T25:00:00Z",
    "FU7",
    "yes",
    "a\x00b",
    "a\x07b",
    "a\x7fb",
    "a\uffffb",
    "a\ufdd0b",
    "a\U0010fffeb",
    'a"b',
    "a,b",
    "a\nb",
    "a\rb",
    "a\r\nb",
    "\u2028",
    "[1,2,3]",
    "[]",
    '{"a":1}',
]
DEEP = "[" * 3000 + "]" * 3000
HOSTILE_JSON = [
    "NaN",
    "Infinity",
    "-Infinity",
    "9" * 5000,
    "-" + "9" * 400,
    "1e400",
    "1.0",
    "1E2",
    "-0",
    '"\\ud800"',
    '"a\\udc00b"',
    '"\\ud83d\\ude00"',
    '"\\u0000"',
    '"\\uffff"',
    '"\\"quoted\\""',
    '""',
    '"   "',
    '"Y"',
    '"true"',
    '"1"',
    '"[1,2,3]"',
    "true",
    "false",
    "12",
    "[]",
    '["x"]',
    "[1,2]",
    "[1,2,3,4]",
    "[-1,2,3]",
    "[1,null,2]",
    "[1,[2],3]",
    '{"a":1}',
    "{}",
    "[" * 20 + "]" * 20,
    DEEP,
    json.dumps("x" * 200_000),
]


def valid_text(f: Field) -> st.SearchStrategy[str]:
    """A value of the field that its contract accepts, as the text a file holds."""
    if f.name == CONTRACT_ID.get(f.name):
        return IDS
    match f.type:
        case "string":
            if f.name == "subject_id":
                return SUBJECTS
            if f.name == "tract_id":
                return TRACTS
            return st.one_of(st.sampled_from(["dr.hadi", "rad.a", "dm.jones"]), AWKWARD)
        case "enum":
            return st.sampled_from(f.values)
        case "int":
            low = int(f.min if f.min is not None else 0)
            high = int(min(f.max if f.max is not None else low + 3, low + 3))
            return st.integers(low, high).map(str)
        case "float":
            low = f.min if f.min is not None else 0.0
            high = min(f.max if f.max is not None else 100.0, 100.0)
            return st.floats(low, high).map(lambda x: str(round(x, 2)))
        case "bool":
            return st.sampled_from(["Y", "N"])
        case "date":
            return DATES
        case "timestamp":
            return STAMPS
        case "list_float":
            size = st.floats(f.min or 0.0, 60.0).map(lambda x: round(x, 1))
            return st.lists(size, min_size=f.length, max_size=f.length).map(
                lambda xs: json.dumps(xs, separators=(",", ":"))
            )
    return st.just("")


CONTRACT_ID = {c.id_field: c.id_field for c in CONTRACTS.values() if c.id_field}


def csv_value(f: Field) -> st.SearchStrategy[str]:
    return st.one_of(
        valid_text(f), valid_text(f), valid_text(f), st.just(""), st.sampled_from(HOSTILE_TEXT)
    )


def json_value(f: Field) -> st.SearchStrategy[str]:
    """A JSON text: valid (typed as the contract says), null, or hostile."""

    def as_json(text: str, ascii_only: bool) -> str:
        if f.type in ("int", "float", "list_float"):
            return text
        if f.type == "bool":
            return "true" if text == "Y" else "false"
        return json.dumps(text, ensure_ascii=ascii_only)

    valid = st.builds(as_json, valid_text(f), st.booleans())
    return st.one_of(valid, valid, valid, st.just("null"), st.sampled_from(HOSTILE_JSON))


# -- files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """A generated file: where each row starts, which rows are blank lines, and whether the
    file holds something that must refuse it."""

    path: Path
    starts: list[int]
    blank: list[bool]
    must_refuse: bool


def line_breaks(text: str) -> int:
    """Line ends as a person's editor counts them: CR LF, CR or LF."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


@st.composite
def csv_file(draw: st.DrawFn, folder: Path) -> Written:
    contract = CONTRACTS[draw(st.sampled_from(CSV_KINDS))]
    columns = list(contract.columns)
    order = draw(st.permutations(columns)) if draw(st.integers(0, 9)) == 0 else columns
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    out = io.StringIO()
    out.write(draw(st.sampled_from(["", "\ufeff"])))
    csv.writer(out, quoting=quoting, lineterminator=end).writerow(order)
    starts, blank, must_refuse = [], [], False
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.integers(0, 7)) == 0:
            out.write(end)  # a blank line between rows is no row
        values = [draw(csv_value(contract.field(c))) for c in order]
        shape = draw(st.sampled_from(["whole"] * 8 + ["short", "long"]))
        if shape == "short":
            values = values[: draw(st.integers(1, len(values) - 1))]
        elif shape == "long":
            values.append("extra")
            must_refuse = True
        # Python's writer quotes a line break only if it is in its own line terminator.
        breaks = any("\r" in v or "\n" in v for v in values)
        row = io.StringIO()
        csv.writer(row, quoting=csv.QUOTE_ALL if breaks else quoting, lineterminator=end).writerow(
            values
        )
        starts.append(line_breaks(out.getvalue()) + 1)
        blank.append(not row.getvalue().removesuffix(end).strip())
        out.write(row.getvalue())
    path = folder / contract.source.file
    path.write_bytes(out.getvalue().encode("utf-8", "surrogatepass"))
    return Written(path, starts, blank, must_refuse)


@st.composite
def jsonl_file(draw: st.DrawFn, folder: Path) -> Written:
    contract = CONTRACTS[draw(st.sampled_from(JSON_KINDS))]
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    separator, colon = draw(st.sampled_from([(", ", ": "), (",", ":"), (" , ", " : ")]))
    lines, starts, blank, must_refuse = [], [], [], False
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.integers(0, 7)) == 0:
            lines.append("  ")
        members = [
            (json.dumps(f.name), draw(json_value(f)))
            for f in contract.fields
            if draw(st.integers(0, 19)) > 0  # now and then a key is left out
        ]
        members = draw(st.permutations(members)) if draw(st.booleans()) else members
        trouble = draw(st.sampled_from(["none"] * 30 + ["repeat", "unknown", "broken", "array"]))
        if trouble == "repeat" and members:
            members.append(members[0])
        elif trouble == "unknown":
            members.append(('"comment"', '"x"'))
        text = "{" + separator.join(f"{k}{colon}{v}" for k, v in members) + "}"
        if trouble == "broken":
            text = text[: len(text) // 2]
        elif trouble == "array":
            text = f"[{text}]"
        must_refuse |= trouble != "none" and (trouble != "repeat" or bool(members))
        starts.append(len(lines) + 1)
        blank.append(False)
        lines.append(text)
    path = folder / contract.source.file
    path.write_bytes(end.join(lines).encode("utf-8") + end.encode())
    return Written(path, starts, blank, must_refuse)


# -- the checks -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trial_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose study already holds the small trial of ``cases/trial``."""
    home = tmp_path_factory.mktemp("trial") / "home"
    run = ingest(home, *sorted((CASES / "trial").iterdir()))
    assert run.exit_code == 0, run.stderr
    return home


@pytest.fixture(scope="module")
def fresh_home(trial_home: Path) -> Iterator[Callable[[], Path]]:
    """Copies of the trial home, one per generated file."""
    with tempfile.TemporaryDirectory() as tmp:
        count = iter(range(10**6))

        def copy() -> Path:
            home = Path(tmp) / f"home-{next(count)}"
            shutil.copytree(trial_home, home)
            return home

        yield copy


def check_ingest(home: Path, path: Path, kind: str | None = None) -> Run:
    """Ingest one file and hold the run to the rules that apply to any file."""
    before = positions(home)
    run = ingest(home, path, kind=kind)
    assert run.exit_code in (0, 2), (run.exit_code, run.stdout, run.stderr)
    [report] = run.reports()
    if run.exit_code == 2:
        assert report["refused"].startswith(f"{path.name}: ")
        assert positions(home) == before, "a refused file applied something"
        return run
    assert report["read"] == report["accepted"] + report["duplicates"] + report["rejected"]
    assert len(report["rejections"]) == report["rejected"]
    rejected = {r["line"] for r in report["rejections"]}
    assert len(rejected) == report["rejected"], "one rejection per row"

    kind = report["kind"]
    applied = [p for p in payloads(home, kind) if p.get("ingest_run") == report["ingest_run"]]
    assert len(applied) == report["accepted"]
    assert not {p["source_line"] for p in applied} & rejected, "a rejected row reached the log"
    letters = [p for p in payloads(home, "rejected_row") if p["ingest_run"] == report["ingest_run"]]
    assert sorted((p["line"], p["field"], p["reason"]) for p in letters) == sorted(
        (r["line"], r["field"], r["reason"]) for r in report["rejections"]
    )
    for letter in letters:
        assert set(json.loads(letter["raw"])) == set(CONTRACTS[kind].columns)

    adjudicated = CliRunner().invoke(
        cli, ["--home", str(home), "outcomes", "--study", STUDY, "--json"], catch_exceptions=False
    )
    assert adjudicated.exit_code == 0, adjudicated.output
    json.loads(adjudicated.stdout)
    return run


def check_lines(run: Run, written: Written, home: Path) -> None:
    """Every row is counted once, on the line it starts on; blank lines are not rows."""
    if run.exit_code == 2:
        return
    [report] = run.reports()
    rows = [s for s, b in zip(written.starts, written.blank, strict=True) if not b]
    assert report["read"] == len(rows)
    seen = {r["line"] for r in report["rejections"]}
    seen |= {
        p["source_line"]
        for p in payloads(home, report["kind"])
        if p.get("ingest_run") == report["ingest_run"]
    }
    assert seen <= set(rows)


@SETTINGS
@given(data=st.data())
def test_any_csv_file_is_refused_or_accounted_for(
    data: st.DataObject, fresh_home: Callable[[], Path]
) -> None:
    home = fresh_home()
    with tempfile.TemporaryDirectory() as tmp:
        written = data.draw(csv_file(Path(tmp)))
        run = check_ingest(home, written.path)
        assert run.exit_code == (2 if written.must_refuse else 0), run.stderr
        check_lines(run, written, home)


@SETTINGS
@given(data=st.data())
def test_any_jsonl_file_is_refused_or_accounted_for(
    data: st.DataObject, fresh_home: Callable[[], Path]
) -> None:
    home = fresh_home()
    with tempfile.TemporaryDirectory() as tmp:
        written = data.draw(jsonl_file(Path(tmp)))
        run = check_ingest(home, written.path)
        if written.must_refuse:
            assert run.exit_code == 2, run.stdout
        check_lines(run, written, home)


REGRESSIONS = [
    ("field_over_128k.csv", "clinical_exam", 0),
    ("cr_line_endings.csv", "clinical_exam", 0),
    ("short_rows.csv", "clinical_exam", 0),
    ("non_characters.csv", "clinical_exam", 0),
    ("huge_integer.csv", "clinical_exam", 0),
    ("unterminated_quote.csv", "clinical_exam", 2),
    ("deep_nesting.jsonl", "mri_read", 0),
    ("deep_array_line.jsonl", "mri_read", 2),
    ("lone_surrogate.jsonl", "mri_read", 0),
    ("huge_integer.jsonl", "mri_read", 0),
    ("type_confused.jsonl", "mri_read", 0),
]


@pytest.mark.parametrize(("file", "kind", "exit_code"), REGRESSIONS, ids=lambda x: str(x))
def test_issue_cases_are_refused_or_accounted_for(
    file: str, kind: str, exit_code: int, fresh_home: Callable[[], Path]
) -> None:
    """The files that ended a run with a traceback (issue 10) hold to the same rules."""
    run = check_ingest(fresh_home(), CASES / file, kind=kind)
    assert run.exit_code == exit_code, run.stderr
