"""Running ``tract ingest`` the way users do, and reading back what reached the event log."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from click.testing import CliRunner

import schemas
from services.adjudicator.state import EVIDENCE_KINDS, current
from services.cli import cli
from services.log import EventLog
from services.log.segment import ENVELOPE, iso_text, segment_schema
from services.platform import Platform

CASES = Path(__file__).parent / "cases"
TRACT = Path(sys.executable).parent / "tract"
STUDY = "ST-INGEST"
EVIDENCE = EVIDENCE_KINDS


@dataclass(frozen=True)
class Run:
    """The outcome of one ``tract ingest``: exit code and what it printed."""

    exit_code: int
    stdout: str
    stderr: str

    def reports(self) -> list[dict[str, Any]]:
        """The ``--json`` list, one entry per file."""
        return json.loads(self.stdout)

    def report(self, file: str) -> dict[str, Any]:
        return next(r for r in self.reports() if r["file"] == file)


def _args(home: Path, files: tuple[Path, ...], kind: str | None, as_json: bool) -> list[str]:
    args = ["--home", str(home), "ingest", "--study", STUDY, *map(str, files)]
    if kind:
        args += ["--kind", kind]
    if as_json:
        args.append("--json")
    return args


def ingest(home: Path, *files: Path, kind: str | None = None, as_json: bool = True) -> Run:
    """``tract ingest`` in-process through click (fast); exceptions propagate."""
    result = CliRunner().invoke(cli, _args(home, files, kind, as_json), catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


def ingest_process(home: Path, *files: Path, kind: str | None = None, as_json: bool = True) -> Run:
    """``tract ingest`` as the installed console script in a child process."""
    done = subprocess.run(
        [str(TRACT), *_args(home, files, kind, as_json)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Run(done.returncode, done.stdout, done.stderr)


@contextmanager
def event_log(home: Path) -> Iterator[EventLog]:
    """The home's embedded event log, closed afterwards."""
    log = EventLog(home / "log")
    try:
        yield log
    finally:
        log.close()


def positions(home: Path) -> dict[str, int]:
    with event_log(home) as log:
        return log.positions()


def event_ids(home: Path, topic: str) -> list[str]:
    """A topic's event ids in log order."""
    with event_log(home) as log:
        return log.records(topic).sort("offset").collect()["event_id"].to_list()


def payloads(home: Path, topic: str) -> list[dict[str, Any]]:
    """A topic's event payloads in log order (dates and timestamps as the ISO text events
    carry; record kinds with their provenance: source_file, source_line, ingest_run,
    content_hash)."""
    schema = segment_schema(topic)
    with event_log(home) as log:
        frame = log.records(topic).sort("offset").collect()
    names = [n for n in schema if n not in ENVELOPE or n == "subject_id"]
    return frame.with_columns(iso_text(schema)).select(names).to_dicts()


def records(home: Path, kind: str) -> pl.DataFrame:
    """Every accepted version of every record of ``kind`` (typed), in log order."""
    contract = schemas.contract(kind)
    with event_log(home) as log:
        frame = log.records(kind, STUDY).sort("offset").collect()
    return frame.select("offset", "event_id", *contract.columns)


def current_records(home: Path, kind: str) -> pl.DataFrame:
    """The current version of each record of ``kind``, as the adjudicator sees it."""
    contract = schemas.contract(kind)
    return current(records(home, kind).lazy(), contract).sort(contract.id_field).collect()


@contextmanager
def platform(home: Path) -> Iterator[Platform]:
    """The embedded platform of ``home``, its event log closed afterwards."""
    found = Platform.embedded(home)
    try:
        yield found
    finally:
        found.bus.close()
