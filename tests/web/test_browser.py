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
from playwright.sync_api import Browser, Page, expect

from services.demo.trial import DEMO_STUDY
from services.lock.snapshot import read_manifest
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


@pytest.fixture
def browser(chromium: Browser) -> Browser:
    """The session's Chromium (tests/web/conftest.py): one Playwright per process."""
    return chromium


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


def test_two_committee_members_sign_their_own_votes_and_the_decision_follows(
    served: tuple[Site, str], browser: Browser, page: Page
) -> None:
    """Two members, two real browser sessions: each signs their own vote with their password;
    one signature decides nothing, the second concordant one brings the decision into force."""
    site, base = served
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
    expect(page.locator("input[name=members]")).to_have_count(0)  # nobody else's name to tick
    expect(page.locator("#decide [data-testid=signer]")).to_contain_text("Dr Anna Adams (dr.adams)")
    shot(page, "04-conflict")

    # A refusal first: no rationale.
    page.check("input[name=status][value=CLOSED]")
    page.click("button:has-text('Review your vote')")
    expect(page.get_by_test_id("refusal")).to_contain_text("A rationale is required")

    page.check("input[name=status][value=CLOSED]")
    page.fill("#rationale", "Committee read: no T2 signal, no collection; healed.")
    page.click("button:has-text('Review your vote')")
    expect(page.get_by_test_id("meaning")).to_have_text("decided CLOSED")
    expect(page.get_by_test_id("signer")).to_have_text("Dr Anna Adams (dr.adams)")
    shot(page, "05-sign")
    page.fill("#password", "not my password")
    page.click("button:has-text('Sign and record my vote')")
    expect(page.get_by_test_id("refusal")).to_contain_text("signature refused")
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign and record my vote')")
    expect(page.get_by_test_id("recorded")).to_be_visible()
    expect(page.get_by_test_id("conflict-status")).to_have_text("Open")  # one signature
    expect(page.get_by_test_id("needed")).to_contain_text("1 of 2 signatures for CLOSED")
    expect(page.get_by_test_id("votes")).to_contain_text("Dr Anna Adams (dr.adams)")
    shot(page, "06-one-signature")

    # The second member, in their own browser session, reviews and concurs.
    baker = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    try:
        sign_in(baker, base, "dr.baker")
        baker.goto(f"{base}/conflicts/{READER_DISAGREEMENT_S05}?study={DEMO_STUDY}")
        expect(baker.get_by_test_id("votes")).to_contain_text("UTC: decided CLOSED")
        baker.click("button:has-text('Concur (review')")
        expect(baker.get_by_test_id("signer")).to_have_text("Dr Ben Baker (dr.baker)")
        baker.fill("#password", PASSWORD)
        baker.click("button:has-text('Sign and record my vote')")
        expect(baker.get_by_test_id("conflict-status")).to_have_text("Decided")
        expect(baker.get_by_test_id("recorded")).to_contain_text("is in force")
        expect(baker.get_by_test_id("outcome")).to_have_text("Closed")
        history = baker.get_by_test_id("history")
        expect(history).to_contain_text("in force")
        expect(history).to_contain_text("Dr Anna Adams (dr.adams)")
        expect(history).to_contain_text("Dr Ben Baker (dr.baker)")
        shot(baker, "07-decided")
    finally:
        baker.context.close()
    assert site.platform.votes(DEMO_STUDY)["voter"].to_list() == ["dr.adams", "dr.baker"]

    page.reload()
    expect(page.get_by_test_id("conflict-status")).to_have_text("Decided")
    page.click("nav >> text=Dashboard")
    expect(page.get_by_test_id("readiness")).to_contain_text("6 open conflict(s)")
    shot(page, "08-dashboard-after")


def test_a_monitor_reads_everything_but_cannot_decide(served: tuple[Site, str], page: Page) -> None:
    site, base = served
    sign_in(page, base, "mon.lee")
    page.goto(f"{base}/conflicts/{READER_DISAGREEMENT_S05}?study={DEMO_STUDY}")
    expect(page.get_by_test_id("cannot-decide")).to_be_visible()
    expect(page.locator("button:has-text('Review your vote')")).to_have_count(0)
    expect(page.get_by_test_id("mri-MRI_FINAL")).to_contain_text("Reader 1 (RAD-A)")
    shot(page, "09-monitor-conflict")
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


@pytest.mark.decided
def test_a_data_manager_sees_the_study_ready_and_locks_it(
    served: tuple[Site, str], page: Page
) -> None:
    site, base = served
    platform = site.app.state.web.platform  # the server's own, serialised platform
    sign_in(page, base, "dm.jones")
    # The committee is done, but the rejected rows are still the sites' open queries.
    expect(page.get_by_test_id("readiness")).to_contain_text("Not ready to lock: 14 site queries")
    expect(page.get_by_test_id("category-S05")).to_have_text("Full closure")
    page.fill("#lock_id", "PRIMARY")
    page.fill("#reason", "primary analysis")
    page.click("button:has-text('Review the lock of DEMO')")
    expect(page.get_by_test_id("lock-open-queries").locator("tbody tr")).to_have_count(14)
    expect(page.get_by_test_id("signer")).to_have_text("Dana Jones (dm.jones)")
    meaning = "locked DEMO PRIMARY (soft lock): primary analysis"
    expect(page.get_by_test_id("meaning")).to_have_text(meaning)
    page.fill("#password", PASSWORD)  # the lock is signed, as `tract lock --as` signs it
    page.click("button:has-text('Confirm and lock DEMO')")
    expect(page.get_by_test_id("refusal")).to_contain_text("give the reason")
    page.fill("#queries_reason", "the sites' answers are analysed as a sensitivity set")
    page.fill("#password", "not my password")
    page.click("button:has-text('Confirm and lock DEMO')")
    expect(page.get_by_test_id("refusal")).to_contain_text("signature refused")
    expect(page.locator("#queries_reason")).to_have_value(
        "the sites' answers are analysed as a sensitivity set"
    )  # kept, to sign again
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Confirm and lock DEMO')")
    expect(page.get_by_test_id("locked")).to_contain_text("Locked as PRIMARY")
    signature = read_manifest(platform.store, DEMO_STUDY, "PRIMARY")["signature"]
    assert (signature["printed_name"], signature["meaning"]) == ("Dana Jones", meaning)
    assert signature["signed_via"] == "web"
    expect(page.get_by_test_id("lock-queries")).to_contain_text("analysed as a sensitivity set")
    page.click("nav >> text=Dashboard")
    expect(page.get_by_test_id("locks")).to_contain_text("PRIMARY")
    expect(page.get_by_test_id("readiness")).to_contain_text("Lock in force: PRIMARY")
    shot(page, "10-dashboard-locked")
    page.click("nav >> text=Audit trail")
    page.select_option("#kind", "access")
    page.click("button:has-text('Filter')")
    expect(page.get_by_test_id("audit")).to_contain_text("SIGN_IN ALLOWED")
    shot(page, "11-audit")
    with page.expect_download() as download:
        page.get_by_test_id("export").click()
    assert download.value.suggested_filename.startswith(f"audit-{DEMO_STUDY}-")
