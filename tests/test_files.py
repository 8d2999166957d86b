"""services/files.py: folders and files only their owner can read, made so on creation and
tightened (with a log line) when an existing one is looser."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from services.files import private_database, private_dir, private_file


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


def test_a_path_that_is_not_a_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match=str(tmp_path / "file")):
        private_dir(tmp_path / "file")
