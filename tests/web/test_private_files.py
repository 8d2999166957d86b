"""Files readable by nobody else (issue 9, item 8): the web folder, the users file and the
session secret are created owner-only and tightened when found looser."""

from __future__ import annotations

import logging
import sqlite3
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli import cli
from services.users import UserStore
from services.web.settings import WebSettings
from tests.web.conftest import fast_hasher


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_users_file_and_its_folder_are_private(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "web" / "users.db", hasher=fast_hasher())
    store.open_session(store.add("dr.adams", "committee", "a long enough password"))
    assert mode(tmp_path / "web") == 0o700 and mode(store.path) == 0o600
    assert not (tmp_path / "web" / "users.db-journal").exists() or (
        mode(tmp_path / "web" / "users.db-journal") == 0o600
    )


def test_the_secret_and_its_folder_are_private(tmp_path: Path) -> None:
    WebSettings.from_env(tmp_path, environ={})
    assert mode(tmp_path / "web") == 0o700 and mode(tmp_path / "web" / "secret") == 0o600


def test_looser_files_from_an_older_version_are_tightened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    web = tmp_path / "web"
    web.mkdir()
    web.chmod(0o755)
    sqlite3.connect(web / "users.db").close()
    (web / "users.db").chmod(0o644)
    (web / "secret").write_text("an old secret of enough length")
    (web / "secret").chmod(0o644)
    with caplog.at_level(logging.WARNING):
        settings = WebSettings.from_env(tmp_path, environ={})
        UserStore.from_settings(settings, hasher=fast_hasher())
    assert settings.secret.reveal() == "an old secret of enough length"
    assert (mode(web), mode(web / "users.db"), mode(web / "secret")) == (0o700, 0o600, 0o600)
    assert "tightened to 0600" in caplog.text and str(web / "users.db") in caplog.text


def test_tract_users_add_leaves_only_private_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["--home", str(tmp_path), "users", "add", "dr.adams", "--role", "committee"],
        input="a long password\na long password\n",
    )
    assert result.exit_code == 0, result.output
    web = tmp_path / "web"
    assert mode(web) == 0o700
    modes = {p.name: mode(p) for p in web.iterdir()}
    assert "users.db" in modes and set(modes.values()) == {0o600}, modes
