"""Accounting that survives a kill: a Kafka watcher killed while it publishes a file, then
started again. The rows the killed attempt sent carry its ingest run; the retry of the same
bytes joins that run, so its report reads as a clean run's (read = accepted + duplicates +
rejected with the clean run's figures, not the sent rows again as duplicates) and every
applied row's run has its accounting record."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from services.demo.synthetic import write_synthetic_trial
from services.platform import Platform
from tests.bus.stack import Stack, drop, running, wait_for

pytestmark = pytest.mark.slow
STUDY = "SYN"
FIGURES = ("read", "accepted", "duplicates", "rejected")


def test_a_killed_watchers_retry_accounts_like_a_clean_run(
    broker, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    exams = write_synthetic_trial(tmp_path / "files", 200, seed=5, study=STUDY)[
        "clinical_exams.csv"
    ]
    clean = Platform.embedded(tmp_path / "clean").ingest(STUDY, [exams]).reports[0].to_dict()
    rows = clean["read"]

    with running(Stack(broker.bootstrap, topic_factory("w") + ".", tmp_path)) as stack:
        stack.start("adjudicator", "adjudicator", "run")
        wait_for(lambda: stack.applied().heartbeat_age() is not None, 60, "the service to run")
        folder = tmp_path / "drop"
        stack.extra_env["TRACT_CRASH_AT"] = f"kafka-record-sent@{rows // 2}"
        killed = stack.start("watcher", "ingest", "--study", STUDY, "--watch", str(folder))
        del stack.extra_env["TRACT_CRASH_AT"]
        wait_for(lambda: (folder / "processed").exists(), 30, "the watcher to start")
        drop([exams], folder)
        assert killed.wait(timeout=120) == -9, stack.log("watcher")  # SIGKILL, mid-publish
        stack.procs.pop("watcher")

        landed = len(stack.topic_records("clinical_exam"))
        assert 0 < landed < rows, f"{landed} of {rows} rows landed: not a partial publish"
        stack.wait_applied({"clinical_exam": landed})  # the killed attempt's rows are applied
        assert (folder / exams.name).exists()  # the file waits for the retry

        stack.start("watcher", "ingest", "--study", STUDY, "--watch", str(folder))
        reports = folder / "processed"
        wait_for(lambda: list(reports.glob("*.report.json")), 60, "the retry to finish")
        report = json.loads(next(reports.glob("*.report.json")).read_text())

        assert {f: report[f] for f in FIGURES} == {f: clean[f] for f in FIGURES}
        assert report["read"] == report["accepted"] + report["duplicates"] + report["rejected"]
        stack.wait_applied({"clinical_exam": clean["accepted"]})
        stack.wait_settled()
        state = stack.applied()
        runs = set(
            state.records("clinical_exam", STUDY, columns=("ingest_run",)).collect()["ingest_run"]
        )
        assert runs == {report["ingest_run"]}  # one run: the killed attempt's, joined
        recorded = state.records("ingest_run", STUDY).collect()
        assert recorded["ingest_run"].to_list() == [report["ingest_run"]]
        assert recorded["accepted"].to_list() == [clean["accepted"]]
