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
    from services.log.chain import Entry, sha256_file
    from services.log.verify import _check_segment

    path = tmp_path / "segments" / "000000000001.parquet"
    path.parent.mkdir()
    pl.DataFrame({"offset": [5, 6, 7], "study": ["EXO1"] * 3}).write_parquet(path)
    digest = sha256_file(path.read_bytes())

    def entry(first: int, count: int, study: str = "EXO1") -> Entry:
        file = "segments/000000000001.parquet"
        return Entry(1, "clinical_exam", study, first, count, file, 0, digest, "", "", "")

    assert _check_segment(tmp_path, entry(5, 3)) is None
    for wrong in (entry(4, 3), entry(5, 2), entry(5, 4), entry(5, 3, "OTHER")):
        finding = _check_segment(tmp_path, wrong)
        assert finding is not None and "do not match the index entry" in finding.problem
