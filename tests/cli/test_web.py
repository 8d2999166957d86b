"""``tract users`` and ``tract serve`` as an administrator runs them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from services.cli import cli
from services.demo.trial import DEMO_STUDY
from services.platform import Platform
from tests import servers

TRACT = str(Path(sys.executable).parent / "tract")


def run(home: Path, *args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_users_add_prompts_for_a_hidden_password_when_none_is_given(tmp_path: Path) -> None:
    code, out = run(
        tmp_path, "users", "add", "dr.adams", "--role", "committee",
        input="a long password\na long password\n",
    )  # fmt: skip
    assert code == 0 and "added dr.adams (committee)" in out
    assert "a long password" not in out  # hidden input is not echoed
    code, out = run(tmp_path, "users", "list", "--json")
    assert [(u["username"], u["role"], u["active"]) for u in json.loads(out)] == [
        ("dr.adams", "committee", True)
    ]


def test_users_commands_manage_and_audit_accounts(tmp_path: Path) -> None:
    add = ("users", "add", "mon.lee", "--role", "monitor", "--password-stdin")
    assert run(tmp_path, *add, input="p" * 12 + "\n")[0] == 0
    assert run(tmp_path, "users", "passwd", "mon.lee", input="q" * 12 + "\n" + "q" * 12)[0] == 0
    code, out = run(tmp_path, "users", "remove", "mon.lee")
    assert code == 0 and "removed mon.lee" in out
    assert "(removed)" in run(tmp_path, "users", "list")[1]
    access = Platform.embedded(tmp_path).records("access", "*").collect()
    assert access["action"].to_list() == ["USER_ADD", "USER_PASSWORD", "USER_REMOVE"]
    assert all(who.startswith("cli:") for who in access["who"])


def test_a_password_is_read_from_stdin_not_from_the_command_line(tmp_path: Path) -> None:
    """Issue 13: a password in argv is readable by every local account (ps, /proc)."""
    code, out = run(tmp_path, "users", "add", "dr.x", "--role", "committee", "--password", "p" * 12)
    assert code == 2 and "--password-stdin" in out and "p" * 12 not in out
    assert run(tmp_path, "users", "list", "--json")[1].strip() == "[]"
    code, out = run(
        tmp_path, "users", "add", "dr.x", "--role", "committee", "--password-stdin",
        input="a password with spaces  \nsecond line ignored\n",
    )  # fmt: skip
    assert code == 0 and "added dr.x" in out
    from services.users import UserStore

    store = UserStore(tmp_path / "web" / "users.db")
    assert store.authenticate("dr.x", "a password with spaces  ", "cli").username == "dr.x"


def test_the_prompt_asks_twice_and_refuses_a_mismatch(tmp_path: Path) -> None:
    code, out = run(
        tmp_path, "users", "add", "dr.x", "--role", "committee",
        input="a long password\nanother password\na long password\na long password\n",
    )  # fmt: skip
    assert code == 0 and "do not match" in out and "added dr.x" in out
    code, out = run(tmp_path, "users", "passwd", "dr.x", "--password-stdin", input="\n")
    assert code == 1 and "no password on standard input" in out


def test_a_bad_user_command_prints_one_red_line() -> None:
    done = subprocess.run(
        [TRACT, "--home", "/nonexistent-never", "users", "add", "x", "--role", "chair"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "'chair' is not one of" in done.stderr


def test_a_short_password_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [TRACT, "--home", str(tmp_path), "users", "add", "dr.x", "--role", "committee",
         "--password-stdin"],
        input="short\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "error: a password needs at least 10 characters" in done.stderr


@pytest.mark.slow
def test_tract_serve_serves_the_committee_page(demo_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    subprocess.run(
        [TRACT, "--home", str(home), "users", "add", "dr.adams", "--role", "committee",
         "--password-stdin"],
        input="correct horse battery\n", check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    port = servers.free_port()
    server = subprocess.Popen(
        [TRACT, "--home", str(home), "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (
                "tract serve did not start"
            )
            time.sleep(0.2)
        with httpx.Client(base_url=base) as client:
            page = client.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            chosen = client.post(
                "/login",
                data={
                    "username": "dr.adams",
                    "password": "correct horse battery",
                    "csrf_token": token,
                },
                follow_redirects=True,
            )  # an administrator's password: first, the member chooses their own
            assert str(chosen.url).endswith("/password")
            token = re.search(r'name="csrf_token" value="([^"]+)"', chosen.text).group(1)  # type: ignore[union-attr]
            own = "a phrase only dr.adams knows"
            client.post(
                "/password",
                data={"csrf_token": token, "current": "correct horse battery", "new": own,
                      "again": own},
            )  # fmt: skip
            queue = client.get("/conflicts")
            assert queue.status_code == 200 and queue.text.count("data-conflict=") == 7
            assert f"Study {DEMO_STUDY}" in client.get("/").text
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert f"serving {home}" in out and "bus embedded" in out


def test_users_have_printed_names_for_their_signatures(tmp_path: Path) -> None:
    code, out = run(
        tmp_path, "users", "add", "dr.x", "--role", "committee", "--full-name", "Dr Xena Xu",
        "--password-stdin", input="a long enough password\n",
    )  # fmt: skip
    assert code == 0 and "signs as 'Dr Xena Xu'" in out
    code, out = run(
        tmp_path, "users", "add", "qa.y", "--role", "approver", "--password-stdin",
        input="a long enough password\n",
    )  # fmt: skip
    assert code == 0 and "cannot sign until one is set" in out
    from services.errors import UserError

    with pytest.raises(UserError, match=r"already dr\.x's"):
        run(tmp_path, "users", "set-name", "qa.y", "--full-name", "Dr Xena Xu")
    code, out = run(tmp_path, "users", "set-name", "qa.y", "--full-name", "Yusuf Yilmaz")
    assert code == 0 and "qa.y now signs as 'Yusuf Yilmaz'" in out
    code, out = run(tmp_path, "users", "list")
    assert "Dr Xena Xu" in out and "Yusuf Yilmaz" in out
