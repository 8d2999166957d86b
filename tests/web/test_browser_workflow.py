"""Issue 13 in a real browser (Debian's Chromium driven by Playwright), on a laptop (1440x900)
and on a phone (390x844): a committee member walks the queue from the keyboard, the subject
page, the data manager's site queries and the lock's confirmation. On every page the page itself
never scrolls sideways (wide tables scroll in their own box) and Sign out stays on screen.

Screenshots go to test-artifacts/screenshots/ (ignored by git) for people to look at.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from services.demo.trial import DEMO_STUDY
from tests.web.conftest import PASSWORD, SHOTS, Site

pytestmark = pytest.mark.slow

VIEWPORTS = {"laptop": (1440, 900), "phone": (390, 844)}


@pytest.fixture(params=list(VIEWPORTS))
def screen(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def page(chromium: Browser, screen: str) -> Iterator[Page]:
    width, height = VIEWPORTS[screen]
    context = chromium.new_context(viewport={"width": width, "height": height})
    yield context.new_page()
    context.close()


def width_of(page: Page) -> int:
    return page.viewport_size["width"] if page.viewport_size else 0


def fits(page: Page) -> None:
    """The page does not scroll sideways and Sign out is on screen (when signed in), measured
    once the page has loaded: a click returns before its stylesheet has, and an unstyled table
    is wider than any phone."""
    page.wait_for_load_state("load")
    width = width_of(page)
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{page.url}: the page is {scroll} px wide on a {width} px screen"
    out = page.get_by_role("button", name="Sign out")
    if out.count():
        box = out.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, f"Sign out off {box}"


def shot(page: Page, screen: str, name: str) -> None:
    fits(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"wf-{screen}-{name}.png"), full_page=True)


def access_key(page: Page, letter: str) -> None:
    """Alt+letter as Chromium on Linux gets it from the keyboard. Playwright's
    ``keyboard.press("Alt+n")`` drops the key's text when Alt is held, and Chromium matches
    access keys on that text, so the key event goes through the DevTools protocol whole."""
    cdp = page.context.new_cdp_session(page)
    event = {
        "modifiers": 1,  # Alt
        "key": letter,
        "code": f"Key{letter.upper()}",
        "windowsVirtualKeyCode": ord(letter.upper()),
        "unmodifiedText": letter,
        "text": letter,
    }
    cdp.send("Input.dispatchKeyEvent", {"type": "keyDown", **event})
    cdp.send("Input.dispatchKeyEvent", {"type": "keyUp", **event})
    cdp.detach()


def sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    expect(page.get_by_test_id("me")).to_have_text(username)


def test_a_member_clears_the_queue_from_the_keyboard(
    live: tuple[Site, str], page: Page, screen: str
) -> None:
    """Open the first conflict once; then every vote, its signature and the step to the next
    conflict is keys only (access keys, arrows, Tab, typing, Enter), and the queue page is never
    seen again until the walk ends: the member has signed a vote on every conflict."""
    site, base = live
    sign_in(page, base, "dr.adams")
    page.goto(f"{base}/conflicts")
    total = int(page.get_by_test_id("open-total").inner_text())
    assert total == 7
    shot(page, screen, "01-queue")
    page.locator("[data-conflict] a[href^='/conflicts/']").first.click()
    expect(page.get_by_test_id("position")).to_contain_text(f"1 of {total}")
    expect(page.get_by_test_id("shortcuts")).to_contain_text("next")
    shot(page, screen, "02-conflict")

    decided: list[str] = []  # the conflicts voted on, in the order walked
    while len(decided) < 20:
        decided.append(page.url.split("/conflicts/")[1].split("?")[0])
        access_key(page, "s")  # the first status, focused and chosen
        page.keyboard.press("ArrowDown")  # the second: NOT_CLOSED, or NEW_TRACT for a new tract
        access_key(page, "r")  # the rationale
        page.keyboard.type("Committee read of the evidence: see the reads side by side.")
        page.keyboard.press("Tab")  # Review your vote…
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("signer")).to_have_text("Dr Anna Adams (dr.adams)")
        if len(decided) == 1:
            shot(page, screen, "03-sign")
        expect(page.locator("#password")).to_be_focused()  # once the page has loaded
        page.keyboard.type(PASSWORD)  # the password field has the focus: the signature
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("recorded")).to_be_visible()
        if page.get_by_test_id("next").count() == 0:
            break
        assert "/conflicts?" not in page.url
        access_key(page, "n")
        expect(page.get_by_test_id("recorded")).to_have_count(0)
        page.wait_for_load_state("load")  # keys sent while the next page loads would be lost

    assert len(set(decided)) == len(decided) == total  # each once, all of them
    expect(page.get_by_test_id("queue-done")).to_be_visible()
    shot(page, screen, "04-last-voted")
    access_key(page, "q")
    expect(page.get_by_test_id("pending")).to_contain_text("My votes pending 0")
    voted = site.app.state.web.platform.votes(DEMO_STUDY)
    assert sorted(voted["conflict_id"]) == sorted(decided)
    assert set(voted["voter"]) == {"dr.adams"}


def test_the_subject_page_from_the_queue(live: tuple[Site, str], page: Page, screen: str) -> None:
    _, base = live
    sign_in(page, base, "mon.lee")
    page.goto(f"{base}/conflicts")
    page.locator("[data-conflict] a[href='/subjects/S09?study=DEMO']").first.click()
    expect(page.locator("h1")).to_have_text("Subject S09")
    tracts = page.get_by_test_id("tracts")
    expect(tracts.locator("[data-tract]")).not_to_have_count(0)
    expect(tracts.locator("thead")).to_contain_text("Parks type")
    expect(page.get_by_test_id("visit-grid")).to_be_visible()
    expect(page.get_by_test_id("subject-conflicts")).to_contain_text("Tract not in the registry")
    shot(page, screen, "05-subject")


def test_the_data_manager_works_the_site_queries(
    live: tuple[Site, str], page: Page, screen: str
) -> None:
    _, base = live
    sign_in(page, base, "dm.jones")
    page.get_by_test_id("queries-link").click()
    expect(page.locator("h1")).to_have_text("Site queries")
    expect(page.get_by_test_id("queries").locator("[data-query]")).to_have_count(14)
    expect(page.get_by_test_id("per-site")).to_contain_text("SITE01")
    shot(page, screen, "06-queries")
    with page.expect_download() as download:
        page.get_by_test_id("csv-SITE01").click()
    assert download.value.suggested_filename.endswith(".csv")

    first = page.get_by_test_id("queries").locator("[data-query]").first
    query_id = first.get_attribute("data-query")
    first.locator("input[name=query_ids]").check()
    page.check("input[name=action][value=ANSWERED]")
    page.fill("#note", "Site: the examiner was Dr Weiss; corrected row follows.")
    page.click("button:has-text('Record')")
    expect(page.get_by_test_id("query-done")).to_contain_text("1 query(ies) answered")
    answered = page.locator(f"[data-query='{query_id}']")
    expect(answered).to_contain_text("Answered")  # the status in words, not colour only
    expect(answered).to_contain_text("corrected row follows")
    shot(page, screen, "07-query-answered")


@pytest.mark.decided
def test_the_lock_is_confirmed_on_its_own_page(
    live: tuple[Site, str], page: Page, screen: str
) -> None:
    site, base = live
    sign_in(page, base, "dm.jones")
    page.fill("#lock_id", "PRIMARY")
    page.fill("#reason", "primary analysis")
    page.click("button:has-text('Review the lock of DEMO')")
    expect(page.locator("h1")).to_have_text("Lock DEMO as PRIMARY?")
    expect(page.get_by_test_id("lock-counts")).to_contain_text("rejected rows")
    expect(page.get_by_test_id("lock-open-queries").locator("tbody tr")).to_have_count(14)
    shot(page, screen, "08-lock-confirm")
    page.fill("#queries_reason", "Queries are on data outside the primary outcome.")
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Confirm and lock DEMO')")
    expect(page.get_by_test_id("locked")).to_contain_text("Locked as PRIMARY")
    event = site.app.state.web.platform.lock_event(DEMO_STUDY, "PRIMARY")
    expect(page.get_by_test_id("receipt")).to_have_text(event["manifest_sha256"])
    expect(page.get_by_test_id("compare")).to_be_visible()
    expect(page.get_by_test_id("download")).to_be_visible()
    shot(page, screen, "09-locked")
    page.click("nav >> text=Locks")
    expect(page.get_by_test_id("lock-history")).to_contain_text("PRIMARY")
    shot(page, screen, "10-locks")


@pytest.mark.decided
def test_the_audit_trail_shows_old_and_new_whole(
    live: tuple[Site, str], page: Page, screen: str
) -> None:
    _, base = live
    sign_in(page, base, "dm.jones")
    page.goto(f"{base}/audit")
    cells = page.get_by_test_id("audit").locator("tbody tr td:last-child")
    expect(cells.filter(has_text="→").first).to_be_visible()
    clipped = cells.evaluate_all(
        "cells => cells.filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.innerText)"
    )
    assert clipped == []
    box = page.get_by_test_id("audit").locator("xpath=..")
    style = box.evaluate("b => getComputedStyle(b).overflowX")
    wide, shown = box.evaluate("b => [b.scrollWidth, b.clientWidth]")
    if screen == "laptop":
        assert wide <= shown, f"the audit table is {wide} px in a {shown} px box at 1440 px"
    else:
        assert style == "auto"  # the table scrolls in its own box; the page does not
    shot(page, screen, "11-audit")
