"""A new user's first hour with the `tract` command (issue 13), as they type it: relative homes,
the version, a home that cannot be written, passwords kept out of argv, and the site queries a
data manager sends back. Each test runs the installed console script in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TRACT = str(Path(sys.executable).parent / "tract")
README = Path(__file__).resolve().parents[1] / "README.md"


DM_PASSWORD = "data manager's own password\n"


def run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACT_")}
    return subprocess.run(
        [TRACT, *args], cwd=cwd, capture_output=True, text=True, timeout=300, input=stdin, env=env
    )


@pytest.fixture(scope="module")
def relative_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's steps: the demo into the default ./tract-data of a fresh folder."""
    folder = tmp_path_factory.mktemp("first-hour")
    done = run("demo", cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder


def test_tract_says_its_version() -> None:
    done = run("--version", cwd=Path.cwd())
    assert done.returncode == 0 and done.stdout.startswith("tract ")
    assert done.stdout.split()[1][0].isdigit()


def test_snapshot_list_works_in_the_default_relative_home(relative_demo: Path) -> None:
    done = run("snapshot", "list", cwd=relative_demo)
    assert done.returncode == 0, done.stderr
    assert "DEMO-PRIMARY-LOCK" in done.stdout and "Traceback" not in done.stderr
    named = run("--home", "./tract-data", "snapshot", "list", cwd=relative_demo)
    assert named.returncode == 0 and "DEMO-PRIMARY-LOCK" in named.stdout


def test_the_demo_says_where_its_files_are(relative_demo: Path) -> None:
    assert (relative_demo / "tract-data" / "demo-files" / "subjects.csv").exists()


@pytest.mark.parametrize("where", ["blocker/home", "/sys/tract-home"])
def test_a_home_that_cannot_be_written_is_a_clear_error(tmp_path: Path, where: str) -> None:
    (tmp_path / "blocker").write_text("a file where the home's parent should be\n")
    subjects = tmp_path / "subjects.csv"
    subjects.write_text("record_id\n")
    done = run("--home", where, "ingest", "--study", "X", str(subjects), cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: cannot use ")
    assert f"home folder ({where}" in done.stderr and "--home" in done.stderr


def test_a_password_never_goes_on_the_command_line(tmp_path: Path) -> None:
    refused = run(
        "users", "add", "dr.adams", "--role", "committee", "--password", "x", cwd=tmp_path
    )
    assert refused.returncode == 2 and "--password is not accepted" in refused.stderr
    added = run(
        "users",
        "add",
        "dr.adams",
        "--role",
        "committee",
        "--password-stdin",
        cwd=tmp_path,
        stdin="a long enough password\n",
    )
    assert added.returncode == 0, added.stderr
    chaired = run("users", "chair", "dr.adams", cwd=tmp_path)
    assert chaired.returncode == 0 and "now chairs" in chaired.stdout


def test_the_data_manager_sends_the_sites_their_queries(tmp_path: Path) -> None:
    from services.demo.trial import write_demo_trial

    files = write_demo_trial(tmp_path / "files")
    assert run("ingest", "--study", "DEMO", *map(str, files.values()), cwd=tmp_path).returncode == 0
    listed = run("queries", "list", cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.count("Q-") == 14
    out = tmp_path / "site01.csv"
    exported = run("queries", "export", "--site", "SITE01", "--out", str(out), cwd=tmp_path)
    assert exported.returncode == 0 and "wrote 14 queries" in exported.stdout
    query = out.read_text().splitlines()[1].split(",")[3]
    closed = run("queries", "close", query, "--as", "dm.jones", cwd=tmp_path)
    assert closed.returncode == 1 and "why you close it unanswered" in closed.stderr
    add = ("users", "add", "dm.jones", "--role", "data_manager", "--full-name", "Dana Jones")
    assert (
        run(*add, "--password-stdin", cwd=tmp_path, stdin="an administrator's one").returncode == 0
    )
    own = ("password", "--as", "dm.jones", "--password-stdin")
    chosen = run(*own, cwd=tmp_path, stdin=f"an administrator's one\n{DM_PASSWORD}\n")
    assert chosen.returncode == 0, chosen.stderr
    close = ("queries", "close", query, "--note", "test row", "--as", "dm.jones")
    closed = run(*close, "--password-stdin", cwd=tmp_path, stdin=DM_PASSWORD)
    assert closed.returncode == 0 and f"{query}: closed by dm.jones" in closed.stdout
    assert run("queries", "list", cwd=tmp_path).stdout.count("Q-") == 13


def test_the_readme_uses_the_installed_command_and_sets_up_airflow() -> None:
    text = README.read_text()
    assert ".venv/bin/tract" in text or "source .venv/bin/activate" in text
    for step in ("AIRFLOW_HOME", "airflow db migrate", "dags unpause"):
        assert step in text, step
    assert "--password " not in text.replace("--password-stdin", "")


def test_a_command_the_core_install_leaves_out_names_the_fix(tmp_path: Path) -> None:
    """`scripts/demo` installs the core only; `tract users add` then needs argon2 (the web
    page's packages): an error naming the package and `scripts/setup all`, not a traceback."""
    core_only = (
        "import sys; sys.modules['argon2'] = None; "  # as if the web page's packages were absent
        "sys.argv = ['tract', '--home', 'h', 'users', 'add', 'dr.adams', '--role', 'committee',"
        " '--password-stdin']; from services.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", core_only],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        input="correct horse battery\n",
        env={**os.environ, "PYTHONPATH": str(README.parent)},
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "'argon2'" in done.stderr and "scripts/setup all" in done.stderr
