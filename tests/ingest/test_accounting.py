"""Accounting: every run accounts for every row, read = accepted + duplicates + rejected,
printed by the CLI per file and kept with the run as an ``ingest_run`` event.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .helpers import CASES, STUDY, event_log, ingest, ingest_process, payloads

TRIAL = sorted((CASES / "trial").iterdir())
SUMMARY = re.compile(
    r"^(?P<file>\S+): read (?P<read>\d+) = accepted (?P<accepted>\d+) \+ "
    r"duplicates (?P<duplicates>\d+) \+ rejected (?P<rejected>\d+)$"
)
COUNTS = ("read", "accepted", "duplicates", "rejected")


def test_json_reports_add_up_and_match_the_runs_kept(tmp_path: Path) -> None:
    """Per file: the counts add up, each rejection is listed, and the log keeps the same run."""
    home = tmp_path / "home"
    for _ in range(2):  # a first run, then one of duplicates and repeated rejections
        run = ingest(home, *TRIAL)
        runs = {p["ingest_run"]: p for p in payloads(home, "ingest_run")}
        for report in run.reports():
            assert report["read"] == report["accepted"] + report["duplicates"] + report["rejected"]
            assert len(report["rejections"]) == report["rejected"]
            kept = runs[report["ingest_run"]]
            assert {k: kept[k] for k in COUNTS} == {k: report[k] for k in COUNTS}
            path = CASES / "trial" / report["file"]
            assert Path(kept["file"]).name == report["file"]
            assert kept["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
            assert kept["source_kind"] == report["kind"]
            assert kept["started_at"] <= kept["finished_at"]
    assert len(payloads(home, "ingest_run")) == 2 * len(TRIAL)
    with event_log(home) as log:
        assert set(log.records("ingest_run").collect()["study"]) == {STUDY}


def test_cli_prints_the_accounting_of_each_file(tmp_path: Path) -> None:
    """The text output of the real console script ends each file with its accounting line."""
    home = tmp_path / "home"
    run = ingest_process(home, *TRIAL, as_json=False)
    assert run.exit_code == 0, run.stderr

    printed = {
        m["file"]: {k: int(m[k]) for k in COUNTS}
        for m in map(SUMMARY.match, run.stdout.splitlines())
        if m
    }
    assert sorted(printed) == sorted(p.name for p in TRIAL)
    kept = {Path(p["file"]).name: {k: p[k] for k in COUNTS} for p in payloads(home, "ingest_run")}
    assert printed == kept
    for counts in printed.values():
        assert counts["read"] == counts["accepted"] + counts["duplicates"] + counts["rejected"]
    rejected_lines = [line for line in run.stdout.splitlines() if line.startswith("  rejected: ")]
    assert len(rejected_lines) == sum(c["rejected"] for c in printed.values())


def test_refused_file_keeps_no_run(tmp_path: Path) -> None:
    """A refused file applies nothing, so there is no run of it to account for."""
    home = tmp_path / "home"
    run = ingest(home, CASES / "not_utf8.csv", CASES / "bad_enum.csv", kind="clinical_exam")
    assert run.exit_code == 2
    assert [Path(p["file"]).name for p in payloads(home, "ingest_run")] == ["bad_enum.csv"]
