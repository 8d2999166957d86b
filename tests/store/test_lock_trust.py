"""Locks that one person cannot bend: ids used once, one lock in force, post-lock changes
counted, unknown studies refused, damaged manifests reported without hiding other locks.

Replayed through the real CLI on a real demo home, as issues 9 and 10 reported them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from services.demo.run import DEMO_PASSWORD
from tests.signing import PASSWORD_LINE, as_data_manager, unlock
from tests.store.trials import STUDY, copy_home

TRACT = str(Path(sys.executable).parent / "tract")


def tract(home: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    done = subprocess.run(
        [TRACT, "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=180,
        input=stdin,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout + done.stderr


def lock(home: Path, lock_id: str, *extra: str) -> tuple[int, str]:
    return tract(
        home,
        "lock",
        "--study",
        STUDY,
        "--lock-id",
        lock_id,
        "--reason",
        "primary",
        "--open-queries-reason",
        "sites answer later",
        *as_data_manager(home),
        *extra,
        stdin=PASSWORD_LINE,
    )


def manifest_path(home: Path, lock_id: str) -> Path:
    return home / "objects" / "locks" / STUDY / lock_id / "manifest.json"


def test_a_lock_id_is_never_reused_even_after_its_manifest_is_removed(decided_home: Path) -> None:
    """Issue 9, item 4: the manifest removed, the same id locked again wrote another snapshot."""
    assert lock(decided_home, "PRIMARY")[0] == 0
    path = manifest_path(decided_home, "PRIMARY")
    path.chmod(0o600)
    path.unlink()
    code, out = lock(decided_home, "PRIMARY")
    assert code == 1 and "manifest is missing" in out and "never reused" in out
    assert not path.exists()


def test_one_lock_in_force_and_no_silent_level_change(decided_home: Path) -> None:
    """Issue 9, item 9: a second id slipped past the lock in force; hard on a soft id stayed
    soft while the answer said "already locked"."""
    assert lock(decided_home, "FIRST")[0] == 0
    code, out = lock(decided_home, "SECOND")
    assert code == 1 and "FIRST" in out and "signed unlock" in out
    code, out = lock(decided_home, "FIRST", "--level", "hard")
    assert code == 1 and "soft lock" in out
    assert json.loads(manifest_path(decided_home, "FIRST").read_text())["level"] == "soft"
    assert not manifest_path(decided_home, "SECOND").exists()


def test_another_request_cannot_complete_a_claimed_lock(decided_home: Path) -> None:
    """A lock id is claimed by the request that freezes its cut: another request (another
    reason, another person) cannot write under it, the same request can finish it."""
    from services.lock.lock import LockRequest, freeze_cut
    from services.platform import Platform

    sources = Platform.embedded(decided_home).lock_sources()
    started = LockRequest(STUDY, "HALF", "primary analysis", "dm.jones")
    freeze_cut(sources, started)  # then the process died
    code, out = tract(
        decided_home,
        "lock",
        "--study",
        STUDY,
        "--lock-id",
        "HALF",
        "--reason",
        "something else",
        "--as",
        "dm.smith",
        "--password-stdin",
        stdin=PASSWORD_LINE,
    )
    assert code == 1 and "claimed by another request" in out
    code, out = tract(
        decided_home,
        "lock",
        "--study",
        STUDY,
        "--lock-id",
        "HALF",
        "--reason",
        "primary analysis",
        "--open-queries-reason",
        "sites answer later",
        *as_data_manager(decided_home),
        stdin=PASSWORD_LINE,
    )
    assert code == 0, out


def test_unknown_studies_are_refused_by_name(decided_home: Path) -> None:
    """Issue 9, item 10: a study with no data got an empty "verified" lock and zeros."""
    code, out = tract(
        decided_home, "lock", "--study", "EXO2", "--lock-id", "L", "--reason", "x",
        *as_data_manager(decided_home), stdin=PASSWORD_LINE,
    )  # fmt: skip
    assert code == 1 and "EXO2" in out and STUDY in out
    assert not (decided_home / "objects" / "locks" / "EXO2").exists()
    for args in (["conflicts"], ["report"], ["outcomes"], ["audit"]):
        code, out = tract(decided_home, *args, "--study", "EXO2")
        assert code == 1 and "EXO2" in out and STUDY in out, args


def test_changes_after_the_lock_are_counted_everywhere(decided_home: Path) -> None:
    """Issue 9, item 5: decisions and a status correction after a lock changed outcomes and a
    category while the dashboard said nothing had changed."""
    from services.demo.trial import write_demo_trial
    from services.platform import Platform

    assert lock(decided_home, "PRIMARY")[0] == 0
    code, out = tract(decided_home, "report", "--study", STUDY)
    assert "Since lock PRIMARY: no outcome or category changed" in out
    # a completer withdraws after the lock: their category changes
    files = write_demo_trial(decided_home.parent / "files")
    header, *rows = files["subjects.csv"].read_text().splitlines()
    columns = header.split(",")
    row = dict(zip(columns, rows[0].split(","), strict=True))
    row |= {"record_version": "9", "status": "WITHDRAWN", "withdrawn_on": "2025-06-01"}
    row |= {"withdrawal_reason": "moved away", "change_reason": "late report from the site"}
    correction = decided_home.parent / "late" / "subjects.csv"
    correction.parent.mkdir()
    correction.write_text(header + "\n" + ",".join(row[c] for c in columns) + "\n")
    assert tract(decided_home, "ingest", "--study", STUDY, str(correction))[0] == 0

    # and the committee revisits a decision: a tract's outcome changes
    _, out = tract(decided_home, "conflicts", "--study", STUDY, "--all", "--json")
    disagreement = next(
        c
        for c in json.loads(out)
        if c["type"] == "READER_DISAGREEMENT" and c["status"] == "DECIDED"
    )
    for member in ("dr.ahmadi", "dr.sato"):  # the demo's committee members, each signing
        code, out = tract(
            decided_home,
            "vote",
            disagreement["conflict_id"],
            "--status",
            "NOT_CLOSED",
            "--rationale",
            "re-read the images after the lock",
            "--as",
            member,
            "--password-stdin",
            "--study",
            STUDY,
            stdin=DEMO_PASSWORD + "\n",
        )
        assert code == 0, out
    assert "is now in force: NOT_CLOSED" in out

    _, out = tract(decided_home, "report", "--study", STUDY, "--json")
    since = json.loads(out)["since_lock"]
    assert (since["lock_id"], since["patients"], since["tracts"]) == ("PRIMARY", 2, 1)
    _, text = tract(decided_home, "report", "--study", STUDY)
    assert "Since lock PRIMARY: 1 tract outcome(s) and 2 patient categories changed" in text
    _, out = tract(decided_home, "outcomes", "--study", STUDY, "--json")
    found = json.loads(out)
    changed = {p["subject_id"] for p in found["patients"] if p["changed_since_lock"]}
    assert changed == {row["subject_id"], disagreement["subject_id"]}
    [tract_] = [t for t in found["tracts"] if t["changed_since_lock"]]
    assert (tract_["subject_id"], tract_["locked_outcome"], tract_["outcome"]) == (
        disagreement["subject_id"],
        "CLOSED",
        "NOT_CLOSED",
    )
    assert tract_["post_lock"]

    # the next lock's manifest says what changed since the previous one
    platform = Platform.embedded(decided_home)
    unlock(platform, STUDY, "PRIMARY", "late withdrawal")
    assert lock(decided_home, "PRIMARY-2")[0] == 0
    changes = json.loads(manifest_path(decided_home, "PRIMARY-2").read_text())[
        "changes_since_previous_lock"
    ]
    assert (changes["lock_id"], changes["tracts"], changes["patients"]) == ("PRIMARY", 1, 2)


@pytest.fixture(scope="module")
def two_locks(trial_templates: Callable[[bool], Path], tmp_path_factory: pytest.TempPathFactory):
    """A decided demo home locked as FIRST, unlocked, then locked as SECOND: made once, each
    damage test copies it whole (its lock files included)."""
    from services.platform import Platform

    home = copy_home(trial_templates(True), tmp_path_factory.mktemp("two-locks") / "home")
    assert lock(home, "FIRST")[0] == 0
    platform = Platform.embedded(home)
    unlock(platform, STUDY, "FIRST", "new data")
    platform.bus.close()
    assert lock(home, "SECOND")[0] == 0
    return home


@pytest.mark.parametrize(
    "damage",
    ['{"files": ', "[1, 2, 3]", '{"lock_id": "PRIMARY"}', "not json at all"],
    ids=["truncated", "a-list", "no-files", "garbage"],
)
def test_a_damaged_manifest_hides_no_other_lock(
    two_locks: Path, tmp_path: Path, damage: str
) -> None:
    """Issue 10, item 6: one damaged manifest broke `snapshot list` and `open` with tracebacks."""
    decided_home = shutil.copytree(two_locks, tmp_path / "home")
    path = manifest_path(decided_home, "FIRST")
    path.chmod(0o600)
    path.write_text(damage)

    code, out = tract(decided_home, "snapshot", "list", "--json")
    assert code == 0
    listed = {e["id"]: e for e in json.loads(out)}
    assert listed["FIRST"]["integrity"] == "damaged" and listed["FIRST"]["problem"]
    assert listed["SECOND"]["integrity"] == "verified"
    code, out = tract(decided_home, "snapshot", "open", "--study", STUDY, "--lock", "FIRST")
    assert code == 1 and "manifest" in out
    assert tract(decided_home, "snapshot", "open", "--study", STUDY, "--lock", "SECOND")[0] == 0


def test_a_lock_whose_files_are_all_gone_is_still_listed(decided_home: Path) -> None:
    import shutil

    assert lock(decided_home, "PRIMARY")[0] == 0
    folder = manifest_path(decided_home, "PRIMARY").parent
    for path in folder.rglob("*"):
        path.chmod(0o700)
    shutil.rmtree(folder)
    _, out = tract(decided_home, "snapshot", "list", "--json")
    [entry] = json.loads(out)
    assert (entry["id"], entry["integrity"]) == ("PRIMARY", "missing")


def test_a_relative_home_lists_its_locks(decided_home: Path) -> None:
    """Issue 13: `tract snapshot list` crashed with a traceback on a relative home (the
    default ./tract-data and the README's ./my-trial)."""
    assert lock(decided_home, "PRIMARY")[0] == 0
    done = subprocess.run(
        [TRACT, "--home", decided_home.name, "snapshot", "list"],
        capture_output=True,
        text=True,
        cwd=decided_home.parent,
        timeout=120,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "PRIMARY" in done.stdout and "verified" in done.stdout


def test_a_lock_signed_for_airflow_is_taken_within_its_time_or_by_the_run_that_claimed_it(
    decided_home: Path,
) -> None:
    """The gap: a lock signed for the DAG waited forever, so a run months later locked a study
    its signer never saw in that state under their signature. Past REQUEST_VALID_FOR it is
    refused; a run that claimed the lock id in time may still finish what it started."""
    from datetime import timedelta

    from services.lock.errors import LockRefusedError
    from services.lock.lock import check_in_time, freeze_cut, signed_lock_request, take_by
    from services.platform import Platform
    from tests.signing import lock_request

    platform = Platform.embedded(decided_home)
    sources = platform.lock_sources()
    asked = lock_request(platform, STUDY, "PRIMARY", open_queries_reason="sites answer later")
    request, signature = signed_lock_request(sources, STUDY, asked)
    deadline = take_by(signature["signed_at"])
    check_in_time(sources, request, signature["signed_at"], now=deadline)
    late = deadline + timedelta(seconds=1)
    with pytest.raises(LockRefusedError, match=f"lock request {asked} was signed at") as refused:
        check_in_time(sources, request, signature["signed_at"], now=late)
    assert "Sign it again" in str(refused.value) and "--for-airflow" in str(refused.value)

    freeze_cut(sources, request)  # its run claimed the id in time, then stopped
    check_in_time(sources, request, signature["signed_at"], now=late)


def test_a_lock_is_not_taken_on_a_log_someone_edited(decided_home: Path) -> None:
    """The gap: an insider who rewrote an exam segment in the home (what `tract verify` calls
    ALTERED) could still lock: the lock froze and certified the edited data. Now the lock
    checks the log first and takes nothing, not even a claim."""
    from services.platform import Platform
    from tests.store.trials import alter_an_exam

    alter_an_exam(decided_home)
    code, out = lock(decided_home, "PRIMARY")
    assert code == 1 and "the event log does not verify, so nothing is locked" in out, out
    assert "was changed after it was written" in out and "tract verify" in out
    assert Platform.embedded(decided_home).records("lock", STUDY).collect().is_empty()
    assert not manifest_path(decided_home, "PRIMARY").exists()


def test_a_log_edited_while_the_lock_is_materialised_is_not_locked(
    decided_home: Path, tmp_path: Path
) -> None:
    """Checked again once the files are computed: an edit after the cut was frozen (between
    the DAG's freeze_cut and materialise) stages nothing."""
    from services.lock.errors import LogAlteredError
    from services.lock.lock import LockRequest, freeze_cut, materialise
    from services.platform import Platform
    from tests.store.trials import alter_an_exam

    sources = Platform.embedded(decided_home).lock_sources()
    request = LockRequest(
        STUDY, "PRIMARY", "primary analysis", "dm.jones", open_queries_reason="sites later"
    )
    cut = freeze_cut(sources, request)
    alter_an_exam(decided_home)
    with pytest.raises(LogAlteredError, match="does not verify"):
        materialise(sources, request, cut, tmp_path / "staging")
    assert not (tmp_path / "staging").exists()


def test_a_lock_freezes_outcomes_computed_from_the_log_not_the_state_files(
    decided_home: Path,
) -> None:
    """Found by hand as an insider: the maintained state's bucket files (no chain covers
    them) edited to turn every tract NOT_CLOSED were what `tract lock` froze, and `tract
    verify` said INTACT. The lock now computes what it freezes from the verified log."""
    import polars as pl

    from services.platform import Platform

    honest = Platform.embedded(decided_home).adjudicate(STUDY).tracts
    for bucket in (decided_home / "state").rglob("tracts/*.parquet"):
        bucket.chmod(0o600)
        pl.read_parquet(bucket).with_columns(outcome=pl.lit("NOT_CLOSED")).write_parquet(bucket)
    assert Platform.embedded(decided_home).outcomes(STUDY).tracts["outcome"].unique().to_list() == [
        "NOT_CLOSED"
    ]  # what the edit did to every read of the state
    assert lock(decided_home, "PRIMARY")[0] == 0
    locked = pl.read_parquet(
        manifest_path(decided_home, "PRIMARY").parent / "tract_outcomes.parquet"
    )
    key = ["subject_id", "tract_id"]
    assert locked.select(*key, "outcome").sort(key).equals(honest.select(*key, "outcome").sort(key))


def test_the_state_rebuilt_under_a_lock_leaves_only_private_files(decided_home: Path) -> None:
    """Found by hand: the state deleted (as its verify finding says to) and rebuilt under a
    lock in force came back world-readable for a moment (the lock's outcomes, kept beside it,
    made the folders with the default mode). Every folder is 0700 and every file 0600."""
    import stat

    from services.platform import Platform

    assert lock(decided_home, "PRIMARY")[0] == 0
    shutil.rmtree(decided_home / "state")
    Platform.embedded(decided_home).outcomes(STUDY)  # rebuilt, the lock's outcomes beside it
    assert (decided_home / "state" / "baselines").is_dir()
    for path in [decided_home / "state", *(decided_home / "state").rglob("*")]:
        want = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == want, path
