"""Fixtures for the web page: a home holding the demo trial with its conflicts still OPEN (the
committee's real situation), users of every role, an app over it, and a signed-in client.

The demo is ingested once per session; every test gets its own copy of the home, so a test that
records decisions never leaks into another.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path

import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, expect, sync_playwright

from services.accounts import account_events
from services.platform import Platform
from services.signatures import Credentials
from services.users import UserStore
from services.web.app import create_app
from services.web.settings import WebSettings

PASSWORD = "correct horse battery"
# username -> role; three committee members (quorum is 2: two can agree while one dissents),
# and an approver, who with the admin can approve a data manager's unlock request.
PEOPLE = {
    "dr.adams": "committee",
    "dr.baker": "committee",
    "dr.clarke": "committee",
    "dm.jones": "data_manager",
    "mon.lee": "monitor",
    "root.admin": "admin",
    "qa.ng": "approver",
}
# The printed names their electronic signatures show.
FULL_NAMES = {
    "dr.adams": "Dr Anna Adams",
    "dr.baker": "Dr Ben Baker",
    "dr.clarke": "Dr Clara Clarke",
    "dm.jones": "Dana Jones",
    "mon.lee": "Morgan Lee",
    "root.admin": "Ada Admin",
    "qa.ng": "Quinn Ng",
}
# The demo's conflicts (stable ids: same inputs, same id).
READER_DISAGREEMENT_S05 = "C-8e7c0d8f4e05"
UNMATCHED_S09 = "C-79a9fcf7ca4a"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def fast_hasher() -> PasswordHasher:
    """argon2id with tiny costs: the same code path, without 100 ms per sign-in in tests."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@dataclass
class Site:
    """One app over one fresh copy of the demo home."""

    home: Path
    platform: Platform
    users: UserStore
    app: FastAPI

    def positions(self) -> dict[str, int]:
        """Per topic, how many events the log holds: what a refusal must not change."""
        return dict(self.platform.source.positions())

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="http://testserver")

    def vote(self, conflict_id: str, voter: str, status: str, rationale: str) -> dict:
        """A member's signed vote through the platform (as `tract vote` records it)."""
        return self.platform.vote(
            conflict_id,
            status=status,
            rationale=rationale,
            credentials=Credentials(voter, PASSWORD, "cli", "test"),
            directory=self.users,
        )

    def decide(self, conflict_id: str, status: str, rationale: str, *members: str) -> dict:
        """Each member (default dr.baker and dr.clarke) signs the same vote: a decision."""
        for member in members or ("dr.baker", "dr.clarke"):
            result = self.vote(conflict_id, member, status, rationale)
        return result


@pytest.fixture
def site_factory(
    trial_templates: Callable[[bool], Path], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Site]]:
    """Sites over copies of the demo home: with its conflicts open, or, for a test marked
    ``@pytest.mark.decided``, decided by the demo committee's signed votes (as
    ``decide_demo_conflicts`` would in the test, without voting again in every test)."""
    made: list[Site] = []
    template = trial_templates(request.node.get_closest_marker("decided") is not None)

    def make(
        clock: Callable[[], datetime] | None = None,
        environ: dict[str, str] | None = None,
        hasher: PasswordHasher | None = None,
        **settings: object,
    ) -> Site:
        home = tmp_path / f"home-{len(made)}"
        shutil.copytree(template, home)
        platform = Platform.embedded(home)
        web_settings = WebSettings.from_env(home, environ=environ or {}, **settings)
        users = UserStore.from_settings(web_settings, hasher=hasher or fast_hasher())
        for name, role in PEOPLE.items():
            users.add(name, role, PASSWORD, FULL_NAMES[name], temporary=False)  # their own
        platform.record(account_events(users, PEOPLE, "ADD", "cli:test"))  # as `tract users`
        site = Site(home, platform, users, create_app(platform, web_settings, users, clock))
        made.append(site)
        return site

    yield make
    for site in made:
        site.platform.bus.close()


@pytest.fixture
def site(site_factory: Callable[..., Site]) -> Site:
    return site_factory()


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn in a daemon thread on a free loopback port; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def hidden_fields(html: str) -> dict[str, str]:
    """The hidden inputs of a page's forms, as a browser would post them back."""
    fields: dict[str, str] = {}
    for name, value in HIDDEN.findall(html):
        fields.setdefault(name, unescape(value))  # the page's first form that has the field
    return fields


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in through the form; returns the session's CSRF token."""
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/no-such-page").text)  # any page has the sign-out form


@pytest.fixture
def as_role(site: Site) -> Callable[[str], tuple[TestClient, str]]:
    """``as_role("monitor")`` -> (a client signed in as that role's user, its CSRF token)."""

    def make(role: str) -> tuple[TestClient, str]:
        username = next(u for u, r in PEOPLE.items() if r == role)
        client = site.client()
        return client, sign_in(client, username)

    return make


def later(days: int) -> Callable[[], datetime]:
    """A clock ``days`` after now, to age the conflicts."""
    moment = datetime.now(UTC) + timedelta(days=days)
    return lambda: moment


# -- the browser: Debian's Chromium, axe-core for the accessibility check ------------------------
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
# Pinned: a new axe release may add rules; the version moves only on purpose.
AXE_VERSION = "4.10.2"
AXE_DIR = ROOT / ".cache" / f"axe-core-{AXE_VERSION}"


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install chromium"
    # How long a page may take to show what a test expects, not a timing assertion: a signed
    # vote (argon2) and the redirect that follows took over the 5 s default on a loaded CI box
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def live(site_factory: Callable[..., Site]) -> Iterator[tuple[Site, str]]:
    """A fresh site served over real HTTP on a free loopback port: (site, its URL)."""
    site = site_factory()
    with served(site.app) as base:
        yield site, base


@pytest.fixture(scope="session")
def axe_script() -> Path:
    """axe-core from the npm registry, installed once into .cache/ (a clean clone, as CI runs
    it, installs it here; a later run reuses it)."""
    script = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    AXE_DIR.parent.mkdir(parents=True, exist_ok=True)
    with (AXE_DIR.parent / f"{AXE_DIR.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test workers (pytest -n 2) install it once, in turn
        if not script.exists():
            _install_axe(script)
    return script


def _install_axe(script: Path) -> None:
    """``npm install`` of the pinned axe-core into .cache/."""
    npm = shutil.which("npm")
    assert npm, "npm is missing: apt-get install npm (the accessibility check needs axe-core)"
    done = subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(AXE_DIR),
            "--no-audit",
            "--no-fund",
            "--silent",
            "--no-save",
            f"axe-core@{AXE_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0 and script.exists(), f"npm install axe-core: {done.stderr}"
