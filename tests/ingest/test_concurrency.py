"""Two ingests at once into one embedded log: the identity check and the publish of one run
do not interleave with the other's, so the same id and version with different content is
accepted once and rejected once, never accepted twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from services.log import EventLog

HEADER = (
    "record_id,record_version,subject_id,tract_id,visit,exam_date,examiner_id,external_opening,"
    "drains_on_compression,discharge_grade,entered_at,entered_by,change_reason,deleted"
)
ROWS = 20_000


def exams(folder: Path, grade: int) -> Path:
    """The same record ids and versions in both files, with different discharge grades."""
    folder.mkdir()
    lines = [
        f"EX-{n},1,S{n % 500},T1,FU1,2025-01-01,dr.hadi,OPEN,Y,{grade},2025-01-01T12:00:00Z,dr.hadi,,N"
        for n in range(ROWS)
    ]
    path = folder / "clinical_exams.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def test_concurrent_ingests_never_accept_two_contents(tmp_path: Path) -> None:
    first, second = exams(tmp_path / "a", 1), exams(tmp_path / "b", 2)
    tract = str(Path(sys.executable).parent / "tract")
    runs = [
        subprocess.Popen(
            [
                tract,
                "--home",
                str(tmp_path / "home"),
                "ingest",
                "--study",
                "S",
                str(path),
                "--json",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for path in (first, second)
    ]
    reports = [json.loads(run.communicate(timeout=300)[0])[0] for run in runs]
    assert sorted(r["accepted"] for r in reports) == [0, ROWS]
    assert sorted(r["rejected"] for r in reports) == [0, ROWS]
    assert all(
        x["reason"].startswith("conflicting duplicate") for r in reports for x in r["rejections"]
    )
    log = EventLog(tmp_path / "home" / "log")
    assert log.positions()["clinical_exam"] == ROWS
