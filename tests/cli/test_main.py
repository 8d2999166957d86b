"""The `tract` console script end to end, as a user runs it: the demo reproduces the published
results, every command keeps its JSON contract, and locks are refused, frozen and verified."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.demo.synthetic import write_synthetic_trial
from services.demo.trial import write_demo_trial
from tests.signing import PASSWORD_LINE, as_data_manager

TRACT = str(Path(sys.executable).parent / "tract")


def tract(
    home: Path, *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [TRACT, "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"tract {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


def tract_json(home: Path, *args: str) -> object:
    return json.loads(tract(home, *args, "--json").stdout)


@pytest.fixture(scope="module")
def demo_from_env(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``tract demo --json`` run once, its home named by TRACT_HOME alone (no --home): the
    demo's results and the home taken from the environment are read from this one run."""
    folder = tmp_path_factory.mktemp("demo")
    home = folder / "from-env"
    done = subprocess.run(
        [TRACT, "demo", "--json"],
        capture_output=True,
        text=True,
        env=os.environ | {"TRACT_HOME": str(home)},
        timeout=120,
        cwd=folder,
    )
    return home, done


@pytest.fixture(scope="module")
def demo_home(demo_from_env: tuple[Path, subprocess.CompletedProcess[str]]) -> tuple[Path, dict]:
    home, done = demo_from_env
    assert done.returncode == 0, done.stderr
    return home, json.loads(done.stdout)


def test_demo_reproduces_the_published_results(demo_home: tuple[Path, dict]) -> None:
    _, report = demo_home
    completers = report["completers"]
    assert (
        completers["n"],
        completers["FULL_CLOSURE"],
        completers["IMPROVED"],
        completers["RESISTANT"],
    ) == (20, 12, 4, 4)
    assert completers["PENDING"] == 0
    assert completers["percent"]["FULL_CLOSURE"] == 60.0
    assert completers["full_closure_ci"] == pytest.approx([0.3605, 0.8088], abs=1e-4)
    assert (report["tracts"]["closed"], report["tracts"]["treated"]) == (30, 43)
    assert report["tracts"]["percent"] == 69.8
    # the cluster-robust interval of the tract rate, and the readers' agreement, pinned
    assert report["tracts"]["ci"] == pytest.approx([0.4979, 0.8430], abs=1e-4)
    assert report["tracts"]["design_effect"] == pytest.approx(1.684, abs=1e-3)
    assert (report["itt"]["n"], report["itt"]["FULL_CLOSURE"], report["itt"]["withdrawn"]) == (
        23,
        12,
        3,
    )
    assert set(report["sensitivity"]) == {
        "ADMIRE_COMBINED",
        "CLINICAL_ONLY",
        "RESPONSE_50",
        "IN_WINDOW",
    }
    readers = report["readers"]
    assert readers["kappa"] == pytest.approx(0.8302, abs=1e-4) and readers["pairs"] == 42
    assert (readers["disagreements"], readers["adjudicated"]) == (3, 3)
    assert readers["adjudication_rate"] == pytest.approx(3 / 43, abs=1e-4)
    assert (readers["adj_sided_with_r1"], readers["adj_sided_with_r2"]) == (1, 1)
    assert report["committee"]["open_conflicts"] == 0
    assert report["committee"]["by_type"]["READER_DISAGREEMENT"] == {
        "decisions": 1,
        "outcome_changed": 1,
    }
    assert report["lock_id"] == "DEMO-PRIMARY-LOCK"


def test_demo_prints_the_table_for_people(tmp_path: Path) -> None:
    out = tract(tmp_path, "demo").stdout
    assert "FULL_CLOSURE   12   60.0%" in out
    assert "30 of 43 treated tracts closed" in out


def test_demo_again_changes_nothing(demo_home: tuple[Path, dict]) -> None:
    home, report = demo_home
    assert tract_json(home, "demo") == report
    assert tract_json(home, "report", "--study", "DEMO", "--lock", "DEMO-PRIMARY-LOCK") == report


def test_outcomes_and_conflicts_contracts(demo_home: tuple[Path, dict]) -> None:
    home, _ = demo_home
    outcomes = tract_json(home, "outcomes", "--study", "DEMO")
    assert {"subject_id", "tract_id", "outcome", "decided_by"} <= set(outcomes["tracts"][0])
    assert (
        len(outcomes["tracts"]) == 43 + 5
    )  # treated tracts of completers and of withdrawn subjects
    categories = {p["subject_id"]: p["category"] for p in outcomes["patients"]}
    assert sorted(categories.values()).count("WITHDRAWN") == 3
    committee = [t for t in outcomes["tracts"] if t["decided_by"] == "COMMITTEE"]
    assert {(t["subject_id"], t["tract_id"]) for t in committee} >= {("S05", "T2"), ("S11", "T1")}
    assert tract_json(home, "conflicts", "--study", "DEMO") == []
    everything = tract_json(home, "conflicts", "--study", "DEMO", "--all")
    assert len(everything) == 7 and {c["status"] for c in everything} == {"DECIDED"}
    assert set(everything[0]) >= {"conflict_id", "type", "subject_id", "tract_id", "status"}


def test_snapshot_layout(demo_home: tuple[Path, dict]) -> None:
    home, _ = demo_home
    lock = home / "objects" / "locks" / "DEMO" / "DEMO-PRIMARY-LOCK"
    names = {str(p.relative_to(lock)) for p in lock.rglob("*") if p.is_file()}
    assert {
        "manifest.json",
        "tract_outcomes.parquet",
        "patient_outcomes.parquet",
        "conflicts.parquet",
        "audit.parquet",
        "report.json",
    } <= names
    assert {
        "events/clinical_exam.parquet",
        "events/mri_read.parquet",
        "events/committee_decision.parquet",
    } <= names
    manifest = json.loads((lock / "manifest.json").read_text())
    assert {
        "lock_id",
        "study",
        "locked_at",
        "requested_by",
        "reason",
        "positions",
        "rule_set",
        "code_version",
        "row_counts",
        "files",
    } <= set(manifest)
    assert set(manifest["files"]) == names - {"manifest.json"}
    assert manifest["row_counts"]["tract_outcomes.parquet"] == 50
    signature = manifest["signature"]  # the demo's lock is signed as every lock is
    assert (signature["signer"], signature["printed_name"]) == ("dm.demo", "Dana Demo")
    assert signature["meaning"].startswith("locked DEMO DEMO-PRIMARY-LOCK (soft lock): ")


def test_a_tampered_lock_is_refused(demo_home: tuple[Path, dict], tmp_path: Path) -> None:
    home = shutil.copytree(demo_home[0], tmp_path / "home")
    target = home / "objects" / "locks" / "DEMO" / "DEMO-PRIMARY-LOCK" / "report.json"
    target.chmod(0o644)
    target.write_text(target.read_text().replace('"FULL_CLOSURE": 12', '"FULL_CLOSURE": 13'))
    done = tract(home, "report", "--study", "DEMO", "--lock", "DEMO-PRIMARY-LOCK", check=False)
    assert done.returncode == 1
    assert "report.json: sha256" in done.stderr and "altered" in done.stderr


def test_lock_is_refused_while_conflicts_are_open(tmp_path: Path) -> None:
    files = write_demo_trial(tmp_path / "files")
    tract(tmp_path, "ingest", "--study", "DEMO", *map(str, files.values()))
    done = tract(
        tmp_path,
        "lock",
        "--study",
        "DEMO",
        "--lock-id",
        "L1",
        "--reason",
        "interim",
        *as_data_manager(tmp_path),
        check=False,
        stdin=PASSWORD_LINE,
    )
    assert done.returncode == 1
    assert "lock blocked: 7 open conflict(s)" in done.stderr
    assert "READER_DISAGREEMENT x1" in done.stderr and "S05/T2" in done.stderr
    assert not (tmp_path / "objects" / "locks" / "DEMO" / "L1").exists()


def test_post_lock_data_is_accepted_and_flagged(
    demo_home: tuple[Path, dict], tmp_path: Path
) -> None:
    home = shutil.copytree(demo_home[0], tmp_path / "home")
    late = home / "late" / "clinical_exams.csv"
    late.parent.mkdir()
    header = (home / "demo-files" / "clinical_exams.csv").read_text().splitlines()[0]
    late.write_text(
        header
        + "\nEX-S01-T1-FU6,2,S01,T1,FU6,2024-11-04,EXAM-1,CLOSED,N,0,2025-01-10T10:00:00Z,crc.jones,signature added,N\n"
    )
    assert (
        json.loads(tract(home, "ingest", "--study", "DEMO", str(late), "--json").stdout)[0][
            "accepted"
        ]
        == 1
    )
    tracts = tract_json(home, "outcomes", "--study", "DEMO")["tracts"]
    flagged = {(t["subject_id"], t["tract_id"]) for t in tracts if t["post_lock"]}
    assert flagged == {("S01", "T1")}
    locked = tract_json(home, "report", "--study", "DEMO", "--lock", "DEMO-PRIMARY-LOCK")
    assert locked["completers"]["FULL_CLOSURE"] == 12


def test_commands_on_a_trial_the_tests_did_not_script(tmp_path: Path) -> None:
    files = write_synthetic_trial(tmp_path / "files", 60, seed=20261126, study="SYN")
    summary = tract_json(tmp_path, "ingest", "--study", "SYN", *map(str, files.values()))
    assert all(f["read"] == f["accepted"] + f["duplicates"] + f["rejected"] for f in summary)
    outcomes = tract_json(tmp_path, "outcomes")
    assert {t["outcome"] for t in outcomes["tracts"]} <= {"CLOSED", "NOT_CLOSED", "PENDING"}
    report = tract_json(tmp_path, "report")
    assert report["completers"]["n"] == sum(
        1 for p in outcomes["patients"] if p["category"] != "WITHDRAWN"
    )
    for name, printed in (("dr.a", "Dr Alice Able"), ("dr.b", "Dr Bruno Baker")):
        tract(
            tmp_path,
            "users",
            "add",
            name,
            "--role",
            "committee",
            "--full-name",
            printed,
            "--password-stdin",
            stdin="correct horse battery\n",
        )
    open_ids = [c["conflict_id"] for c in tract_json(tmp_path, "conflicts")]
    for member in ("dr.a", "dr.b") if open_ids else ():  # each signs their own votes at once
        tract(
            tmp_path,
            "vote",
            *open_ids,
            "--status",
            "NOT_EVALUABLE",
            "--rationale",
            "images lost",
            "--as",
            member,
            "--password-stdin",
            stdin="correct horse battery\n",
        )
    assert tract_json(tmp_path, "conflicts") == []
    lock = ("lock", "--study", "SYN", "--lock-id", "SYN-1", "--reason", "final", "--json")
    signed = as_data_manager(tmp_path)
    manifest = json.loads(tract(tmp_path, *lock, *signed, stdin=PASSWORD_LINE).stdout)
    assert manifest["lock_id"] == "SYN-1"
    again = json.loads(tract(tmp_path, *lock, *signed, stdin=PASSWORD_LINE).stdout)
    assert again["already_locked"]


def test_home_from_the_environment(
    demo_from_env: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    home, done = demo_from_env
    assert done.returncode == 0, done.stderr
    assert (home / "log" / "LOG").exists()


def test_ingest_refusal_exit_code_and_audit(tmp_path: Path) -> None:
    bad = tmp_path / "clinical_exams.csv"
    bad.write_text("record_id,visit\nX,FU1\n")
    done = tract(tmp_path, "ingest", "--study", "S", str(bad), check=False)
    assert done.returncode == 2
    assert "clinical_exams.csv: missing column(s)" in done.stderr
