"""The committee's page in a real browser: Debian's Chromium driven by Playwright, against the
app served by uvicorn in a daemon thread (as httpx's own test server runs).

Screenshots of the main pages are written to test-artifacts/screenshots/ for people to look at.
Playwright cannot download its own browser here: it launches /usr/bin/chromium (installed by
scripts/test, i.e. `.ci/run`).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

from services.demo.run import decide_demo_conflicts
from services.demo.trial import DEMO_STUDY
from tests.web.conftest import PASSWORD, READER_DISAGREEMENT_S05, Site

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def served(site_factory: Callable[..., Site]) -> Iterator[tuple[Site, str]]:
    """A fresh site served over real HTTP on a free loopback port."""
    site = site_factory()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(site.app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield site, f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    yield context.new_page()
    context.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/")
    expect(page).to_have_url(f"{base}/login?next=%2F")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    expect(page.get_by_test_id("me")).to_have_text(username)


def test_a_committee_member_decides_a_conflict_and_the_report_follows(
    served: tuple[Site, str], page: Page
) -> None:
    _, base = served
    page.goto(f"{base}/login")
    shot(page, "01-login")
    sign_in(page, base, "dr.adams")
    expect(page.get_by_test_id("results-hidden")).to_be_visible()  # no efficacy figures
    expect(page.get_by_test_id("patients")).to_have_count(0)
    expect(page.get_by_test_id("readiness")).to_contain_text("Not ready to lock: 7 open")
    shot(page, "02-dashboard-before")

    page.click("nav >> text=Conflicts")
    expect(page.get_by_test_id("open-total")).to_have_text("7")
    expect(page.locator("[data-conflict]")).to_have_count(7)
    shot(page, "03-queue")

    page.locator(f"[data-conflict='{READER_DISAGREEMENT_S05}'] a[href^='/conflicts/']").click()
    expect(page.locator("h1")).to_contain_text("MRI readers disagree · S05 / T2")
    final = page.get_by_test_id("mri-MRI_FINAL")
    expect(final.locator("thead th")).to_have_text(["", "Reader 1", "Reader 2", "Adjudicator"])
    t2 = final.locator("tr", has_text="T2-hyperintense tract").locator("td")
    expect(t2).to_have_text(
        ["T2-hyperintense tract ≠ readers differ", "no", "yes", "—"]
    )  # both reads, side by side; the difference marked in words, not colour only
    expect(page.locator("body")).not_to_contain_text("RAD-A")  # blinded for the committee
    expect(page.get_by_test_id("exams").locator("[data-visit='FU6']")).to_have_count(1)
    shot(page, "04-conflict")

    # A refusal first: no rationale.
    page.check("input[name=status][value=CLOSED]")
    page.check("input[name=members][value='dr.baker']")
    page.click("button:has-text('Review decision')")
    expect(page.get_by_test_id("refusal")).to_contain_text("A rationale is required")

    page.check("input[name=status][value=CLOSED]")
    page.check("input[name=members][value='dr.baker']")
    page.fill("#rationale", "Committee consensus read: no T2 signal, no collection; healed.")
    page.click("button:has-text('Review decision')")
    expect(page.get_by_test_id("confirm")).to_contain_text("dr.adams, dr.baker")
    shot(page, "05-confirm")
    page.click("button:has-text('Confirm and record')")
    expect(page.get_by_test_id("recorded")).to_be_visible()
    expect(page.get_by_test_id("conflict-status")).to_have_text("Decided")
    expect(page.get_by_test_id("outcome")).to_have_text("Closed")
    expect(page.get_by_test_id("history")).to_contain_text("in force")
    shot(page, "06-decided")

    page.click("nav >> text=Dashboard")
    expect(page.get_by_test_id("readiness")).to_contain_text("6 open conflict(s)")
    shot(page, "07-dashboard-after")


def test_a_monitor_reads_everything_but_cannot_decide(served: tuple[Site, str], page: Page) -> None:
    site, base = served
    sign_in(page, base, "mon.lee")
    page.goto(f"{base}/conflicts/{READER_DISAGREEMENT_S05}?study={DEMO_STUDY}")
    expect(page.get_by_test_id("cannot-decide")).to_be_visible()
    expect(page.locator("button:has-text('Review decision')")).to_have_count(0)
    expect(page.get_by_test_id("mri-MRI_FINAL")).to_contain_text("Reader 1 (RAD-A)")
    shot(page, "08-monitor-conflict")
    # Not only hidden: the server refuses a forged post from the monitor's own session.
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    before = site.positions()
    response = page.request.post(
        f"{base}/conflicts/{READER_DISAGREEMENT_S05}/decision",
        form={
            "csrf_token": token or "",
            "study": DEMO_STUDY,
            "status": "CLOSED",
            "rationale": "forged",
            "members": "mon.lee",
        },
    )
    assert response.status == 403 and "role monitor may not decide" in response.text()
    assert {t: n for t, n in site.positions().items() if n != before.get(t)} == {
        "access": before["access"] + 1
    }


def test_a_data_manager_sees_the_study_ready_and_locks_it(
    served: tuple[Site, str], page: Page
) -> None:
    site, base = served
    platform = site.app.state.web.platform  # the server's own, serialised platform
    decide_demo_conflicts(platform, recorded_by="dr.adams")
    sign_in(page, base, "dm.jones")
    # The committee is done, but the rejected rows are still the sites' open queries.
    expect(page.get_by_test_id("readiness")).to_contain_text("Not ready to lock: 14 site queries")
    expect(page.get_by_test_id("category-S05")).to_have_text("Full closure")
    page.fill("#lock_id", "PRIMARY")
    page.fill("#reason", "primary analysis")
    page.click("button:has-text('Review the lock of DEMO')")
    expect(page.get_by_test_id("lock-open-queries").locator("tbody tr")).to_have_count(14)
    page.click("button:has-text('Confirm and lock DEMO')")
    expect(page.get_by_test_id("refusal")).to_contain_text("give the reason")
    page.fill("#queries_reason", "the sites' answers are analysed as a sensitivity set")
    page.click("button:has-text('Confirm and lock DEMO')")
    expect(page.get_by_test_id("locked")).to_contain_text("Locked as PRIMARY")
    expect(page.get_by_test_id("lock-queries")).to_contain_text("analysed as a sensitivity set")
    page.click("nav >> text=Dashboard")
    expect(page.get_by_test_id("locks")).to_contain_text("PRIMARY")
    expect(page.get_by_test_id("readiness")).to_contain_text("Lock in force: PRIMARY")
    shot(page, "09-dashboard-locked")
    page.click("nav >> text=Audit trail")
    page.select_option("#kind", "access")
    page.click("button:has-text('Filter')")
    expect(page.get_by_test_id("audit")).to_contain_text("SIGN_IN ALLOWED")
    shot(page, "10-audit")
    with page.expect_download() as download:
        page.get_by_test_id("export").click()
    assert download.value.suggested_filename.startswith(f"audit-{DEMO_STUDY}-")
