"""Every main page passes axe-core's accessibility check, as each role that sees it.

axe-core (pinned, from the npm registry; the ``axe_script`` fixture installs it into .cache/) is
injected into the page Playwright shows in Debian's Chromium. The page's strict CSP forbids any
script, so the test's browser context bypasses the CSP for that injection only: the app itself
serves no script. A violation of impact "serious" or "critical" fails the test, named with its
rule, the page and the elements it points at; the lesser ones are the reviewers' to weigh.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from services.accounts import account_events
from tests.web.conftest import (
    PASSWORD,
    READER_DISAGREEMENT_S05,
    UNMATCHED_S09,
    Site,
)

pytestmark = pytest.mark.slow

BLOCKING = ("serious", "critical")
# What every role reads: the dashboard, the queue, two conflict pages (an unmatched tract has
# its own registry part), the subject list and one subject, the queries, the locks and the audit.
READ_PAGES = (
    "/",
    "/conflicts",
    f"/conflicts/{READER_DISAGREEMENT_S05}?study=DEMO",
    f"/conflicts/{UNMATCHED_S09}?study=DEMO",
    "/subjects",
    "/subjects/S05?study=DEMO",
    "/subjects/S09?study=DEMO",
    "/queries",
    "/locks",
    "/audit",
)
USERS = {"committee": "dr.adams", "data_manager": "dm.jones", "monitor": "mon.lee"}
SCREENS = {"laptop": (1440, 900), "phone": (390, 844)}


@pytest.fixture(params=list(SCREENS))
def page(chromium: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    width, height = SCREENS[request.param]
    context = chromium.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
    yield context.new_page()
    context.close()


def violations(page: Page, axe: Path) -> list[str]:
    """axe's serious and critical findings on the page as it stands, one line each."""
    page.add_script_tag(path=str(axe))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 4).map(n => n.target.join(" ")),
            }));
        }"""
    )
    return [
        f"{page.url}: {v['impact']} {v['id']} ({v['help']}) at {v['nodes']}"
        for v in found
        if v["impact"] in BLOCKING
    ]


def sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    expect(page.get_by_test_id("me")).to_have_text(username)


def test_the_sign_in_page(live: tuple[Site, str], page: Page, axe_script: Path) -> None:
    _, base = live
    page.goto(f"{base}/login")
    found = violations(page, axe_script)
    page.fill("#username", "nobody")
    page.fill("#password", "wrong password")
    page.click("button:has-text('Sign in')")  # the refusal, too
    found += violations(page, axe_script)
    assert found == [], "\n".join(found)


def test_choosing_ones_own_password(live: tuple[Site, str], page: Page, axe_script: Path) -> None:
    """Signed in with the password an administrator set, a member lands on the one page open
    to them, is told why, and goes on to the dashboard once they chose their own."""
    site, base = live
    temporary, own = "an administrator's password", "my own secret words"
    site.users.set_password("dr.adams", temporary)  # as `tract users passwd dr.adams` does
    site.platform.record(account_events(site.users, ["dr.adams"], "PASSWORD", "cli:admin"))
    page.goto(f"{base}/login")
    page.fill("#username", "dr.adams")
    page.fill("#password", temporary)
    page.click("button:has-text('Sign in')")
    expect(page).to_have_url(f"{base}/password")
    expect(page.get_by_role("status")).to_contain_text("set by an administrator")
    found = violations(page, axe_script)
    for field, value in (("#current", temporary), ("#new", own), ("#again", "another phrase")):
        page.fill(field, value)
    page.click("button:has-text('Change password')")
    expect(page.get_by_role("alert")).to_contain_text("the two new passwords differ")
    found += violations(page, axe_script)
    for field, value in (("#current", temporary), ("#new", own), ("#again", own)):
        page.fill(field, value)
    page.click("button:has-text('Change password')")
    expect(page).to_have_url(f"{base}/")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("role", list(USERS))
def test_every_page_a_role_reads(
    live: tuple[Site, str], page: Page, axe_script: Path, role: str
) -> None:
    _, base = live
    sign_in(page, base, USERS[role])
    found: list[str] = []
    for path in READ_PAGES:
        response = page.goto(f"{base}{path}")
        assert response and response.ok, f"{path}: {response and response.status}"
        found += violations(page, axe_script)
    assert found == [], "\n".join(found)


def test_a_vote_refused_signed_and_recorded(
    live: tuple[Site, str], page: Page, axe_script: Path
) -> None:
    _, base = live
    sign_in(page, base, "dr.adams")
    page.goto(f"{base}/conflicts/{READER_DISAGREEMENT_S05}?study=DEMO")
    page.click("button:has-text('Review your vote')")  # nothing chosen: errors by the fields
    expect(page.get_by_test_id("refusal")).to_be_visible()
    found = violations(page, axe_script)
    page.check("input[name=status][value=CLOSED]")
    page.fill("#rationale", "Consensus read: healed.")
    page.click("button:has-text('Review your vote')")
    expect(page.get_by_test_id("meaning")).to_be_visible()
    found += violations(page, axe_script)
    page.fill("#password", "not my password")
    page.click("button:has-text('Sign and record my vote')")  # the signature refused
    expect(page.get_by_test_id("refusal")).to_be_visible()
    found += violations(page, axe_script)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign and record my vote')")
    expect(page.get_by_test_id("recorded")).to_be_visible()
    found += violations(page, axe_script)
    assert found == [], "\n".join(found)


@pytest.mark.decided
def test_the_lock_from_confirmation_to_receipt(
    live: tuple[Site, str], page: Page, axe_script: Path
) -> None:
    _, base = live
    sign_in(page, base, "dm.jones")
    page.fill("#lock_id", "PRIMARY")
    page.fill("#reason", "primary analysis")
    page.click("button:has-text('Review the lock of DEMO')")
    expect(page.get_by_test_id("lock-preview")).to_be_visible()
    found = violations(page, axe_script)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Confirm and lock DEMO')")  # no reason for the open queries
    expect(page.get_by_test_id("refusal")).to_be_visible()
    found += violations(page, axe_script)
    page.fill("#queries_reason", "Queries are on data outside the primary outcome.")
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Confirm and lock DEMO')")
    expect(page.get_by_test_id("locked")).to_be_visible()
    found += violations(page, axe_script)
    for path in ("/", "/locks", "/subjects/S05?study=DEMO"):  # locked: the lock's own parts
        page.goto(f"{base}{path}")
        found += violations(page, axe_script)
    assert found == [], "\n".join(found)
