"""The maintained state equals a full re-adjudication after any sequence of batches.

Hypothesis drives a small trial through random steps, each a real file through ``ingest`` or a
decision through the platform: exam corrections and deletions, versions that arrive late,
reads that settle or raise disagreements, subjects who withdraw, committee decisions, locks and
unlocks. After every step the state the platform maintains incrementally (only the subjects a
batch touched are recomputed) must equal the state rebuilt from the log from scratch.
"""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from services.cli import cli
from services.platform import Platform
from services.state.maintained import KEPT, TABLES, in_key_order
from services.state.records import adjudicate_study
from tests.adjudicator import builders as b
from tests.signing import unlock, vote

STUDY = "PROP"
SUBJECTS = ("S1", "S2", "S3")
TRACTS = ("T1", "T2")
VISITS = ("INJ1", "FU5", "FU6")
SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _text(value: Any, kind: str) -> Any:
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else value


def write(folder: Path, kind: str, rows: list[dict[str, Any]]) -> Path:
    """Rows (as the test builders make them) as the transfer file of ``kind``."""
    contract = schemas.contract(kind)
    assert contract.source is not None
    path = folder / f"{next(_files)}-{contract.source.file}"
    if contract.source.format == "jsonl":
        with path.open("w") as out:
            for row in rows:
                record = {c: row.get(c) for c in contract.columns}
                out.write(json.dumps(record, default=lambda v: _text(v, kind)) + "\n")
    else:
        with path.open("w", newline="") as out:
            writer = csv.DictWriter(out, contract.columns, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({c: _text(row.get(c), kind) for c in contract.columns})
    return path


_files = itertools.count()


class Trial:
    """A small trial ingested into a platform, and the steps that change it."""

    def __init__(self, home: Path, template: Path | None = None) -> None:
        """``template``: a home where this trial's first files are already ingested (by a Trial
        made without one); copying it starts the same trial without ingesting them again."""
        self.home, self.folder = home, home / "files"
        if template is None:
            self.folder.mkdir(parents=True)
        else:
            shutil.copytree(template, home)
        self.platform = Platform.embedded(home)
        self.versions: dict[str, int] = {}
        self.locks = itertools.count(1)
        subjects = [b.subject(s, record_id=f"SUBJ-{s}") for s in SUBJECTS]
        tracts = [b.tract(s, t, record_id=f"TR-{s}-{t}") for s in SUBJECTS for t in TRACTS]
        exams = [
            b.exam(s, t, v, record_id=f"EX-{s}-{t}-{v}")
            for s in SUBJECTS
            for t in TRACTS
            for v in VISITS
        ]
        reads = [
            b.read(s, t, role, read_id=f"RD-{s}-{t}-{role}")
            for s in SUBJECTS
            for t in TRACTS
            for role in ("R1", "R2")
        ]
        for kind, rows in (
            ("subject", subjects),
            ("tract", tracts),
            ("clinical_exam", exams),
            ("mri_read", reads),
        ):
            if template is None:
                self.ingest(kind, rows)
        self.rows = {r["record_id"]: r for r in [*subjects, *exams]} | {
            r["read_id"]: r for r in reads
        }

    def ingest(self, kind: str, rows: list[dict[str, Any]]) -> None:
        outcome = self.platform.ingest(STUDY, [write(self.folder, kind, rows)], kind)
        assert not outcome.refused, outcome.refused

    def _version(self, record_id: str, jump: int = 1) -> int:
        self.versions[record_id] = self.versions.get(record_id, 1) + jump
        return self.versions[record_id]

    # steps -------------------------------------------------------------------------------
    def correct_exam(self, s: str, t: str, visit: str, closed: bool, delete: bool) -> None:
        rid = f"EX-{s}-{t}-{visit}"
        row = self.rows[rid] | {
            "record_version": self._version(rid),
            "change_reason": "source data verified",
            "external_opening": "CLOSED" if closed else "OPEN",
            "drains_on_compression": not closed,
            "deleted": delete,
        }
        self.ingest("clinical_exam", [row])

    def late_version(self, s: str, t: str, visit: str) -> None:
        """Version n+2 first, then n+1 (late: kept, never current)."""
        rid = f"EX-{s}-{t}-{visit}"
        late = self._version(rid)
        latest = self._version(rid)
        base = self.rows[rid] | {"change_reason": "re-entered"}
        self.ingest("clinical_exam", [base | {"record_version": latest, "discharge_grade": 1}])
        self.ingest("clinical_exam", [base | {"record_version": late, "external_opening": "OPEN"}])

    def reread(self, s: str, t: str, role: str, healed: bool) -> None:
        rid = f"RD-{s}-{t}-{role}"
        row = self.rows.get(rid) or b.read(s, t, role, read_id=rid)
        self.rows[rid] = row
        version = self._version(rid) if rid in self.versions or role != "ADJ" else 1
        self.versions[rid] = version
        self.ingest(
            "mri_read",
            [
                row
                | {
                    "read_version": version,
                    "t2_hyperintense": not healed,
                    "change_reason": None if version == 1 else "re-read",
                }
            ],
        )

    def withdraw(self, s: str, withdrawn: bool) -> None:
        rid = f"SUBJ-{s}"
        row = self.rows[rid] | {
            "record_version": self._version(rid),
            "change_reason": "status update",
            "status": "WITHDRAWN" if withdrawn else "COMPLETED",
            "withdrawn_on": date(2025, 1, 1) if withdrawn else None,
        }
        self.ingest("subject", [row])

    def vote(self, pick: int, voter: str, status: str) -> None:
        """One member signs a vote on a conflict that holds: alone it may decide nothing, with
        an earlier concordant vote it decides, against one it leaves the conflict open."""
        held = self.platform.adjudicate(STUDY).conflicts.filter(pl.col("status") != "RESOLVED")
        if held.is_empty():
            return
        conflict = held.row(pick % held.height, named=True)
        if conflict["type"] == "UNMATCHED_TRACT":
            return
        vote(
            self.platform,
            conflict["conflict_id"],
            voter,
            status=status,
            rationale="the committee weighed the evidence",
            study=STUDY,
        )

    def lock_or_unlock(self) -> None:
        in_force = self.platform.lock_positions(STUDY)
        sources = self.platform.lock_sources()
        if in_force is None:
            if self.platform.adjudicate(STUDY).open_conflicts().height == 0:
                self.platform.lock(
                    STUDY,
                    f"L{next(self.locks)}",
                    "interim look",
                    "dm.jones",
                    open_queries_reason="sites answer later",
                )
        else:
            locks = sources.lock_events(STUDY).filter(pl.col("action") == "LOCK")
            unlock(self.platform, STUDY, locks["lock_id"][-1], "more data")

    def claim(self) -> None:
        """A lock run that claimed its lock id and froze the cut, then stopped."""
        from services.lock.lock import LockRequest, freeze_cut

        if self.platform.lock_positions(STUDY) is None:
            asked = LockRequest(STUDY, f"L{next(self.locks)}", "interim look", "dm.jones")
            freeze_cut(self.platform.lock_sources(), asked)


STEP = st.one_of(
    st.tuples(
        st.just("correct_exam"),
        st.sampled_from(SUBJECTS),
        st.sampled_from(TRACTS),
        st.sampled_from(VISITS),
        st.booleans(),
        st.booleans(),
    ),
    st.tuples(
        st.just("late_version"),
        st.sampled_from(SUBJECTS),
        st.sampled_from(TRACTS),
        st.sampled_from(VISITS),
    ),
    st.tuples(
        st.just("reread"),
        st.sampled_from(SUBJECTS),
        st.sampled_from(TRACTS),
        st.sampled_from(("R1", "R2", "ADJ")),
        st.booleans(),
    ),
    st.tuples(st.just("withdraw"), st.sampled_from(SUBJECTS), st.booleans()),
    st.tuples(
        st.just("vote"),
        st.integers(0, 9),
        st.sampled_from(("dr.a", "dr.b", "dr.c")),
        st.sampled_from(("CLOSED", "NOT_CLOSED", "NOT_EVALUABLE")),
    ),
    st.tuples(st.just("lock_or_unlock")),
    st.tuples(st.just("claim")),
)


def rebuilt(home: Path, scratch: Path) -> Platform:
    """The same log with no state: the state is rebuilt from scratch, in full."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    shutil.copytree(home / "log", scratch / "log")
    if (home / "objects").exists():
        shutil.copytree(home / "objects", scratch / "objects")
    return Platform.embedded(scratch)


def assert_same_state(maintained: Platform, full: Platform, step: Any) -> None:
    kept, fresh = maintained.adjudicate(STUDY), full.adjudicate(STUDY)
    for table in TABLES:
        left, right = getattr(kept, table), getattr(fresh, table)
        assert left.columns == right.columns, (step, table)
        assert left.equals(right), (step, table, left, right)
    assert maintained.state is not None  # every row where a point read of its subject looks
    assert maintained.state.store.misplaced(STUDY).is_empty(), step


@pytest.fixture(scope="module")
def first_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The property test's starting trial, ingested once (one subject per bucket, as the test
    runs); every example starts from a copy (the ingest took half of each example's time)."""
    home = tmp_path_factory.mktemp("prop-start") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("services.state.maintained.SUBJECTS_PER_BUCKET", 1)
        Trial(home).platform.bus.close()
    return home


@pytest.mark.slow
@SETTINGS
@given(steps=st.lists(STEP, min_size=1, max_size=6))
def test_the_maintained_state_equals_a_full_readjudication(
    tmp_path_factory: pytest.TempPathFactory, first_files: Path, steps: list[tuple]
) -> None:
    base = tmp_path_factory.mktemp("prop")
    with pytest.MonkeyPatch.context() as patch:  # one subject per bucket: splitting is exercised
        patch.setattr("services.state.maintained.SUBJECTS_PER_BUCKET", 1)
        run_steps(base, steps, first_files)


def run_steps(base: Path, steps: list[tuple], template: Path | None = None) -> None:
    trial = Trial(base / "home", template)
    assert_same_state(trial.platform, rebuilt(trial.home, base / "full-0"), "start")
    for n, (name, *args) in enumerate(steps, start=1):
        getattr(trial, name)(*args)
        assert_same_state(trial.platform, rebuilt(trial.home, base / f"full-{n}"), (n, name, args))


def test_every_kept_table_is_written_once_a_generation(tmp_path: Path) -> None:
    """The writers take the kept tables in order (largest first): every table but the visits,
    once each, and a generation holds a folder of bucket files for each (none for the visits)."""
    assert sorted(KEPT) == sorted(set(TABLES) - {"visits"})
    trial = Trial(tmp_path / "home")
    trial.platform.adjudicate(STUDY)
    folder = tmp_path / "home" / "state" / STUDY
    generation = folder / (folder / "CURRENT").read_text().strip()
    assert sorted(p.name for p in generation.iterdir() if p.is_dir()) == sorted(KEPT)
    assert all(any((generation / table).glob("*.parquet")) for table in KEPT)


def test_the_visits_are_computed_for_the_subjects_asked_for(tmp_path: Path) -> None:
    """The visits are not kept: a read of a few subjects' visits is their rows of a full
    adjudication from the log, in key order, and a read without them computes none."""
    trial = Trial(tmp_path / "home")
    full = in_key_order(adjudicate_study(trial.platform.log, STUDY, trial.platform.rules))
    subjects = full.tracts["subject_id"].unique().sort().head(2).to_list()
    read = trial.platform.outcomes(STUDY, subjects, tables=("tracts", "visits"))
    expected = full.visits.filter(pl.col("subject_id").is_in(subjects))
    assert read.visits.height > 0
    assert read.visits.equals(expected)
    assert trial.platform.outcomes(STUDY, subjects, tables=("tracts",)).visits.is_empty()


def test_a_lock_claim_recomputes_nothing(tmp_path: Path) -> None:
    """A lock id claimed (the DAG's freeze_cut) changes no outcome: the state is not
    recomputed for it (it was, for the whole study, at every lock), and still equals a full
    re-adjudication."""
    trial = Trial(tmp_path / "home")
    trial.platform.adjudicate(STUDY)
    current = tmp_path / "home" / "state" / STUDY / "CURRENT"
    generation = current.read_text()
    trial.claim()
    assert trial.platform.lock_sources().lock_events(STUDY)["action"].to_list() == ["CLAIM"]
    assert_same_state(trial.platform, rebuilt(trial.home, tmp_path / "full"), "a claim")
    assert current.read_text() == generation


def test_a_correction_recomputes_only_its_subject(tmp_path: Path) -> None:
    """One corrected exam touches one subject: the other subjects' rows are carried over."""
    trial = Trial(tmp_path / "home")
    before = trial.platform.adjudicate(STUDY)
    trial.correct_exam("S2", "T1", "FU6", closed=False, delete=False)
    after = trial.platform.adjudicate(STUDY)
    changed = after.tracts.join(before.tracts, on=["subject_id", "tract_id"], suffix="_was").filter(
        pl.col("rule_outcome") != pl.col("rule_outcome_was")
    )
    assert changed.select("subject_id", "tract_id").rows() == [("S2", "T1")]
    assert_same_state(trial.platform, rebuilt(trial.home, tmp_path / "full"), "one correction")


def test_readers_of_the_whole_study_compute_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conflicts, site queries, `tract outcomes` and a lock's checks read the kept tables:
    none asks for the visits, which would adjudicate the whole study from the log."""
    trial = Trial(tmp_path / "home")
    trial.platform.outcomes(STUDY, tables=KEPT)  # the state caught up
    trial.platform.bus.close()

    def computed(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the study was adjudicated from the log")

    monkeypatch.setattr("services.state.maintained.adjudicate_study", computed)
    platform = Platform.embedded(trial.home)
    assert platform.lock_sources().conflicts(STUDY, None).height >= 0
    assert platform.queries(STUDY).height >= 0
    assert platform.adjudicate(STUDY, tables=KEPT).tracts.height
    for command in (["conflicts", "--all"], ["outcomes", "--study", STUDY]):
        result = CliRunner().invoke(cli, ["--home", str(trial.home), *command])
        assert result.exit_code == 0, result.output
    with pytest.raises(AssertionError, match="adjudicated from the log"):
        platform.adjudicate(STUDY)  # the visits of every subject
