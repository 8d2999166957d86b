"""``tract verify`` on a copy of a trial home: intact, or exactly what was altered.

Each tampering is what one insider with write access to the home or the store could do by hand
(sqlite3 on the index, rewriting a segment or a locked file and its hash), replayed on a real
locked demo home; ``verify`` must name it, and every read of the lock must refuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from services.log.chain import link
from tests.signing import PASSWORD_LINE, as_data_manager
from tests.store.trials import STUDY

TRACT = str(Path(sys.executable).parent / "tract")
LOCK = "PRIMARY"


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


@pytest.fixture
def locked(decided_home: Path) -> Path:
    code, out = tract(
        decided_home,
        "lock",
        "--study",
        STUDY,
        "--lock-id",
        LOCK,
        "--reason",
        "primary",
        "--open-queries-reason",
        "sites answer later",
        *as_data_manager(decided_home),
        stdin=PASSWORD_LINE,
    )
    assert code == 0, out
    return decided_home


def verdict(home: Path, *extra: str) -> tuple[int, dict]:
    code, out = tract(home, "verify", "--json", *extra)
    return code, json.loads(out[: out.rindex("}") + 1])


def test_a_pristine_home_is_intact(locked: Path) -> None:
    code, found = verdict(locked)
    assert code == 0 and found["verdict"] == "INTACT"
    assert [(c["lock_id"], c["integrity"]) for c in found["locks"]] == [(LOCK, "verified")]
    head = f"{found['log']['head_seq']}:{found['log']['head_hash']}"
    code, text = tract(locked, "verify", "--expect-head", head)
    assert code == 0 and "verdict: INTACT" in text


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE segments SET appended_at = '2020-01-01T00:00:00Z' WHERE seq = 5",
        "DELETE FROM segments WHERE seq = 5",
        "UPDATE segments SET seq = seq + 1000 WHERE seq = 3",
    ],
    ids=["update", "delete", "move"],
)
def test_editing_the_index_with_sqlite_is_found(locked: Path, sql: str) -> None:
    with sqlite3.connect(locked / "log" / "index.db") as db:
        db.execute(sql)
    code, found = verdict(locked)
    assert code == 1 and found["verdict"] == "ALTERED"
    assert "segment" in found["first_finding"]


def test_an_entry_inserted_in_the_middle_is_found(locked: Path) -> None:
    """A forged entry slipped in (its own file, a valid-looking row) breaks the links."""
    with sqlite3.connect(locked / "log" / "index.db") as db:
        rows = db.execute("SELECT * FROM segments ORDER BY seq").fetchall()
        db.execute("UPDATE segments SET seq = -seq WHERE seq >= 5")
        db.execute("UPDATE segments SET seq = 1 - seq WHERE seq < 0")
        forged = list(rows[3])
        forged[0] = 5
        db.execute("INSERT INTO segments VALUES (?,?,?,?,?,?,?,?,?,?,?)", forged)
    code, found = verdict(locked)
    assert code == 1 and "segment 5" in found["first_finding"]


def test_a_rewritten_segment_is_found(locked: Path) -> None:
    first = sorted((locked / "log" / "segments").iterdir())[3]
    frame = pl.read_parquet(first)
    first.chmod(0o600)
    frame.with_columns(pl.lit("X").alias("subject_id")).write_parquet(first)
    code, found = verdict(locked)
    assert code == 1 and first.name in found["first_finding"] and "sha256" in found["first_finding"]


def test_a_whole_chain_rewritten_after_an_edit_is_caught_by_the_lock_anchor(locked: Path) -> None:
    """The insider edits a segment, then recomputes every hash after it and HEAD: the chain
    holds again, but the lock recorded the head at its cut, and an auditor's noted head too."""
    _, before = verdict(locked)
    noted = f"{before['log']['head_seq']}:{before['log']['head_hash']}"
    log = locked / "log"
    log_id = json.loads((log / "LOG").read_text())["log_id"]
    with sqlite3.connect(log / "index.db") as db:
        (name,) = db.execute("SELECT file FROM segments WHERE topic = 'clinical_exam'").fetchone()
    victim = log / name
    victim.chmod(0o600)
    pl.read_parquet(victim).with_columns(examiner_id=pl.lit("SOMEONE-ELSE")).write_parquet(victim)
    with sqlite3.connect(log / "index.db") as db:
        rows = db.execute(
            "SELECT seq, topic, study, first_offset, count, file, sha256, appended_at FROM segments ORDER BY seq"
        ).fetchall()
        previous = "0" * 64
        for seq, topic, study, first, count, file, sha, at in rows:
            data = (log / file).read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            hash_ = link(log_id, seq, topic, study, first, count, sha, at, previous)
            db.execute(
                "UPDATE segments SET sha256 = ?, bytes = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (sha, len(data), previous, hash_, seq),
            )
            previous = hash_
    (log / "HEAD").write_text(f"{rows[-1][0]} {previous}\n")
    code, found = verdict(locked)
    assert code == 1
    assert (
        "rewritten" in found["first_finding"] and f"lock {STUDY}/{LOCK}" in found["first_finding"]
    )
    code, text = tract(locked, "verify", "--expect-head", noted)
    assert code == 1 and "the log was rewritten since" in text


def test_a_lock_rewritten_with_its_manifest_is_refused_everywhere(locked: Path) -> None:
    """Issue 9, item 3: flip an outcome, rewrite its sha256 in the manifest and report.json."""
    folder = locked / "objects" / "locks" / STUDY / LOCK
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(0o600)
    tracts = pl.read_parquet(folder / "tract_outcomes.parquet")
    tracts.with_columns(outcome=pl.lit("CLOSED")).write_parquet(folder / "tract_outcomes.parquet")
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in ("tract_outcomes.parquet", "report.json"):
        data = (folder / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))

    code, found = verdict(locked)
    assert code == 1 and "LOCK event" in found["first_finding"]
    for args in (
        ["snapshot", "open", "--study", STUDY, "--lock", LOCK],
        ["report", "--study", STUDY, "--lock", LOCK],
    ):
        code, out = tract(locked, *args)
        assert code == 1 and "not the manifest the lock was published with" in out, args
    job = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.analysis.job",
            "--store",
            "local",
            "--home",
            str(locked),
            "--study",
            STUDY,
            "--lock",
            LOCK,
        ],
        capture_output=True,
        text=True,
        env=os.environ | {"TRACT_HOME": str(locked)},
    )
    assert job.returncode == 1 and "not the manifest the lock was published with" in job.stderr


def test_a_segment_whose_rows_do_not_match_its_entry_is_named(tmp_path: Path) -> None:
    """The walk's last check of a segment (its bytes already match the index): its offsets
    and study are the entry's, in columns (a 100k trial's segments are millions of rows)."""
    from services.log.chain import Entry, file_sha256
    from services.log.verify import _check_segment

    path = tmp_path / "segments" / "000000000001.parquet"
    path.parent.mkdir()
    pl.DataFrame({"offset": [5, 6, 7], "study": ["EXO1"] * 3}).write_parquet(path)
    digest, _ = file_sha256(path)

    def entry(first: int, count: int, study: str = "EXO1") -> Entry:
        file = "segments/000000000001.parquet"
        return Entry(1, "clinical_exam", study, first, count, file, 0, digest, "", "", "")

    assert _check_segment(tmp_path, entry(5, 3)) is None
    for wrong in (entry(4, 3), entry(5, 2), entry(5, 4), entry(5, 3, "OTHER")):
        finding = _check_segment(tmp_path, wrong)
        assert finding is not None and "do not match the index entry" in finding.problem


def _state_files(home: Path, table: str) -> list[Path]:
    current = home / "state" / STUDY / (home / "state" / STUDY / "CURRENT").read_text().strip()
    return sorted((current / table).glob("*.parquet"))


def test_the_outcomes_files_are_compared_with_the_log(locked: Path) -> None:
    """What the page, `tract outcomes` and `report` read (the maintained state's files) is
    computed afresh from the log and compared: an intact home says so per study."""
    code, found = verdict(locked)
    assert code == 0 and found["state"] == {STUDY: "matches the log"}
    code, text = tract(locked, "verify")
    assert code == 0 and f"state {STUDY}: matches the log" in text


def test_an_outcome_edited_in_the_state_files_is_named(locked: Path) -> None:
    """Found by hand as an insider: a tract's outcome rewritten in the state's bucket file
    showed on every read of the state while `tract verify` said INTACT (no chain covers
    derived files). Verify now names the row, the column and both values."""
    assert tract(locked, "outcomes", "--study", STUDY)[0] == 0  # the state caught up
    bucket = next(f for f in _state_files(locked, "tracts") if pl.read_parquet(f).height)
    frame = pl.read_parquet(bucket)
    row = frame.row(0, named=True)
    forged = "NOT_CLOSED" if row["outcome"] != "NOT_CLOSED" else "CLOSED"
    first = pl.int_range(pl.len()) == 0
    bucket.chmod(0o600)
    frame.with_columns(
        outcome=pl.when(first).then(pl.lit(forged)).otherwise(pl.col("outcome"))
    ).write_parquet(bucket)
    code, out = tract(
        locked, "outcomes", "--study", STUDY, "--subject", row["subject_id"], "--json"
    )
    shown = {t["tract_id"]: t["outcome"] for t in json.loads(out)["tracts"]}
    assert shown[row["tract_id"]] == forged  # what every read of the state shows
    code, found = verdict(locked)
    assert code == 1 and found["verdict"] == "ALTERED"
    assert found["state"] == {STUDY: "DIFFERS from the log"}
    first_finding = found["first_finding"]
    assert f"({STUDY}, tracts): 1 row(s) differ" in first_finding
    assert f"subject_id={row['subject_id']}, tract_id={row['tract_id']}" in first_finding
    assert f"outcome is {forged!r} in the files, {row['outcome']!r} from the log" in first_finding


def test_a_lock_copy_edited_beside_the_state_is_found_once_the_state_uses_it(locked: Path) -> None:
    """The outcomes a lock froze are kept beside the state (to flag what changed since):
    an insider rewrites that copy and has the state rebuilt from it (APPLIED deleted). Verify
    reads the lock afresh from the store, so the flags the forged copy gave are named."""
    assert tract(locked, "outcomes", "--study", STUDY)[0] == 0  # the state caught up
    copies = sorted((locked / "state" / "baselines").rglob("tracts.parquet"))
    assert copies, "the locked home keeps the lock's outcomes beside its state"
    for copy in copies:
        copy.chmod(0o600)
        pl.read_parquet(copy).with_columns(outcome=pl.lit("NOT_CLOSED")).write_parquet(copy)
    (locked / "state" / "APPLIED").unlink()
    assert tract(locked, "outcomes", "--study", STUDY)[0] == 0  # rebuilt with the forged copy
    code, found = verdict(locked)
    assert code == 1 and found["state"] == {STUDY: "DIFFERS from the log"}
    assert f"({STUDY}, tracts)" in found["first_finding"]


def test_applied_naming_a_segment_the_log_lacks_is_found(locked: Path) -> None:
    applied = locked / "state" / "APPLIED"
    data = json.loads(applied.read_text())
    applied.chmod(0o600)
    applied.write_text(json.dumps(data | {"seq": data["seq"] + 7}))
    code, found = verdict(locked)
    assert code == 1 and "APPLIED" in found["first_finding"]
    assert "which the log does not hold" in found["first_finding"]


def test_a_state_behind_the_log_after_a_crash_is_compared_where_it_stands(
    locked: Path, tmp_path: Path
) -> None:
    """A crash after the log committed a correction, before the state caught up, leaves the
    state behind the log: no edit, and not one (it is compared at the entry APPLIED names; the
    next read catches it up)."""
    from services.demo.trial import write_demo_trial

    exams = write_demo_trial(tmp_path / "files")["clinical_exams.csv"]
    header, *rows = exams.read_text().splitlines()
    columns = header.split(",")
    row = dict(zip(columns, next(r for r in rows if ",FU6," in r).split(","), strict=True))
    closed = row["external_opening"] == "CLOSED"
    row |= {
        "record_version": str(int(row["record_version"]) + 1),
        "external_opening": "OPEN" if closed else "CLOSED",
        "drains_on_compression": "Y" if closed else "N",
        "change_reason": "source data verification",
    }
    correction = tmp_path / "correction" / "clinical_exams.csv"
    correction.parent.mkdir()
    correction.write_text(header + "\n" + ",".join(row[c] for c in columns) + "\n")
    before = json.loads((locked / "state" / "APPLIED").read_text())["seq"]
    done = subprocess.run(
        [TRACT, "--home", str(locked), "ingest", "--study", STUDY, str(correction)],
        capture_output=True,
        text=True,
        env=os.environ | {"TRACT_CRASH_AT": "index-committed"},
    )
    assert done.returncode == -9, done.stderr  # killed right after the log committed
    assert json.loads((locked / "state" / "APPLIED").read_text())["seq"] == before
    code, found = verdict(locked)
    assert code == 0 and found["state"] == {STUDY: "matches the log"}, found["findings"]
    assert tract(locked, "outcomes", "--study", STUDY)[0] == 0  # catches up
    code, found = verdict(locked)
    assert code == 0 and found["state"] == {STUDY: "matches the log"}, found["findings"]


def test_a_conflict_deleted_from_the_state_files_is_named(locked: Path) -> None:
    """An insider drops a conflict from the state's files (the page would show one conflict
    fewer to decide): verify names it as missing from the files."""
    assert tract(locked, "outcomes", "--study", STUDY)[0] == 0  # the state caught up
    bucket = next(f for f in _state_files(locked, "conflicts") if pl.read_parquet(f).height)
    frame = pl.read_parquet(bucket)
    dropped = frame.row(0, named=True)
    bucket.chmod(0o600)
    frame.slice(1).write_parquet(bucket)
    code, found = verdict(locked)
    assert code == 1 and found["state"] == {STUDY: "DIFFERS from the log"}
    assert f"({STUDY}, conflicts): 1 row(s) differ" in found["first_finding"]
    assert f"conflict_id={dropped['conflict_id']}" in found["first_finding"]
    assert "missing from the files" in found["first_finding"]


def test_state_files_that_cannot_be_read_are_named(locked: Path) -> None:
    assert tract(locked, "outcomes", "--study", STUDY)[0] == 0  # the state caught up
    _state_files(locked, "tracts")[0].write_bytes(b"not parquet")
    code, found = verdict(locked)
    assert code == 1 and found["state"] == {STUDY: "DIFFERS from the log"}
    assert "its files cannot be read" in found["first_finding"]


def test_a_bucket_layout_edited_in_meta_json_is_named(locked: Path) -> None:
    """meta.json's number of buckets says which file a point read of a subject opens (the
    page's subject view): edited, the rows stay where they are and reads look elsewhere."""
    assert tract(locked, "outcomes", "--study", STUDY)[0] == 0  # the state caught up
    meta = _state_files(locked, "tracts")[0].parents[1] / "meta.json"
    layout = json.loads(meta.read_text())
    meta.chmod(0o600)
    meta.write_text(json.dumps(layout | {"buckets": layout["buckets"] + 2}))
    code, found = verdict(locked)
    assert code == 1 and found["state"] == {STUDY: "DIFFERS from the log"}
    assert "kept in another bucket file than the one a read of them opens" in found["first_finding"]
