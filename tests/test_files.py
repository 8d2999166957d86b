"""services/files.py: folders and files only their owner can read, made so on creation and
tightened (with a log line) when an existing one is looser."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from services.demo.trial import write_demo_trial
from services.files import private_database, private_dir, private_file

TRACT = Path(sys.executable).parent / "tract"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_folder_and_file_are_private(tmp_path: Path) -> None:
    folder = private_dir(tmp_path / "home" / "web")
    assert folder.is_dir() and mode(folder) == 0o700
    path = private_file(folder / "users.db")
    assert path.exists() and path.read_bytes() == b"" and mode(path) == 0o600


def test_creation_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        assert mode(private_dir(tmp_path / "d")) == 0o700
        assert mode(private_file(tmp_path / "d" / "f")) == 0o600
    finally:
        os.umask(old)


def test_looser_ones_are_tightened_and_said_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "web"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    path = folder / "users.db"
    path.write_text("data")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="tract.files"):
        private_dir(folder)
        private_file(path)
    assert (mode(folder), mode(path), path.read_text()) == (0o700, 0o600, "data")
    assert f"{folder}: permissions 0755 tightened to 0700" in caplog.text
    assert f"{path}: permissions 0644 tightened to 0600" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tract.files"):
        private_file(path)
    assert caplog.text == ""  # already private: nothing to say


def test_an_owner_only_mode_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "ro"
    path.write_text("x")
    path.chmod(0o400)
    assert mode(private_file(path)) == 0o400  # stricter than 0600 stays as it is


def test_a_database_brings_its_journal_files_along(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").write_text("")
        Path(f"{db}{suffix}").chmod(0o644)
    private_database(db)
    assert {mode(Path(f"{db}{s}")) for s in ("", "-wal", "-shm", "-journal")} == {0o600}


def test_a_journal_another_process_removes_meanwhile_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in a full run: a reader opening the log while the adjudicator service wrote it
    crashed, because SQLite removed its -journal between our look and our stat."""
    from services import files

    db = tmp_path / "index.db"
    db.write_text("")
    journal = Path(f"{db}-journal")
    journal.write_text("")
    tighten = files._tighten

    def removed_first(path: Path, private: int) -> None:
        if path == journal:
            journal.unlink()  # the writer's transaction ends just now
        tighten(path, private)

    monkeypatch.setattr(files, "_tighten", removed_first)
    assert private_database(db) == db and not journal.exists()


def test_a_path_that_is_not_a_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match=str(tmp_path / "file")):
        private_dir(tmp_path / "file")


def test_a_new_home_is_private_from_its_first_ingest_without_a_warning(tmp_path: Path) -> None:
    """The home and every folder tract creates in it are 0700 from the start: nothing is
    'tightened' (a warning on a fresh home would be noise, and the folders were open until)."""
    home = tmp_path / "new" / "home"
    subjects = write_demo_trial(tmp_path / "files")["subjects.csv"]
    run = subprocess.run(
        [str(TRACT), "ingest", "--study", "EXO1", "--quiet", str(subjects)],
        env=os.environ | {"TRACT_HOME": str(home)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "tightened" not in run.stderr + run.stdout
    folders = [home.parent, home, *(p for p in home.rglob("*") if p.is_dir())]
    assert len(folders) > 4
    assert {str(p.relative_to(tmp_path)): mode(p) for p in folders} == {
        str(p.relative_to(tmp_path)): 0o700 for p in folders
    }
