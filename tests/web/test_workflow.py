"""Issue 13 over HTTP: a committee that works through its queue (sort, pages, assignment, the
walk from conflict to conflict), a conflict page that says everything in the reviewer's words, a
page per subject, site queries, and the lock on the page (confirmation, history, the verified
download, the locked report beside the current one)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable

import polars as pl
import pytest
from fastapi.testclient import TestClient

from services.accounts import account_events
from services.demo.trial import DEMO_STUDY, write_demo_trial
from services.errors import WebConfigError
from services.lock.snapshot import lock_prefix, sha256
from services.web.settings import WebSettings
from tests.web.conftest import (
    PASSWORD,
    READER_DISAGREEMENT_S05,
    UNMATCHED_S09,
    Site,
    hidden_fields,
    sign_in,
)

AsRole = Callable[[str], tuple[TestClient, str]]
DISCORDANCE = "CLINICAL_MRI_DISCORDANCE"


def rows(page: str) -> list[str]:
    """The conflict ids of a queue page, in order."""
    return re.findall(r'data-conflict="(C-[0-9a-f]{12})"', page)


def positions_changed(site: Site, before: dict[str, int]) -> dict[str, int]:
    after = site.positions()
    return {t: after[t] - before.get(t, 0) for t in after if after[t] != before.get(t)}


# -- the queue ------------------------------------------------------------------------------------
def test_the_queue_sorts_and_pages(site: Site, as_role: AsRole) -> None:
    site.platform.ingest("SECOND", list(write_demo_trial(site.home / "second").values()))
    client, _ = as_role("committee")
    first = client.get("/conflicts?per_page=10&sort=subject").text
    second = client.get("/conflicts?per_page=10&sort=subject&page=2").text
    assert len(rows(first)) == 10 and len(rows(second)) == 4
    assert "page 1 of 2" in first and 'rel="next"' in first
    assert not set(rows(first)) & set(rows(second))
    assert 'aria-sort="ascending"' in first and "sort=subject&amp;order=desc" in first
    subjects = re.findall(r'<a href="/subjects/(S\d+)\?study=DEMO">', first)
    assert subjects == sorted(subjects)
    assert client.get("/conflicts?per_page=7").status_code == 400  # 10, 25, 50 or 100


def test_next_and_previous_walk_the_members_queue(as_role: AsRole) -> None:
    client, _ = as_role("committee")
    queue = client.get(f"/conflicts?type={DISCORDANCE}")
    first, second = rows(queue.text)
    assert "tract_queue" in queue.headers["set-cookie"]
    page = client.get(f"/conflicts/{first}?study={DEMO_STUDY}").text
    assert "1 of 2" in page and "Clinical and MRI disagree" in page
    assert f'href="/conflicts/{second}?study={DEMO_STUDY}" accesskey="n"' in page
    assert 'accesskey="p"' not in page  # the first has no previous
    back = re.search(r'<a href="([^"]+)" accesskey="q"', page).group(1)
    assert back.endswith(f"at={first}#row-{first}") and f"type={DISCORDANCE}" in back
    later = client.get(f"/conflicts/{second}?study={DEMO_STUDY}").text
    assert (
        "2 of 2" in later and f'href="/conflicts/{first}?study={DEMO_STUDY}" accesskey="p"' in later
    )
    assert 'data-testid="queue-done"' in later
    for key in ("N", "P", "Q", "S", "R"):
        assert f"<kbd>{key}</kbd>" in page  # the shortcuts are shown


def test_after_a_vote_the_walk_goes_on_from_where_it_was(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("committee")
    order = rows(client.get("/conflicts").text)  # every open conflict, oldest first
    here = order.index(READER_DISAGREEMENT_S05)
    review = client.post(
        f"/conflicts/{READER_DISAGREEMENT_S05}/decision",
        data={
            "csrf_token": csrf,
            "study": DEMO_STUDY,
            "status": "CLOSED",
            "rationale": "consensus read: healed",
            "seen_fingerprint": hidden_fields(
                client.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text
            )["seen_fingerprint"],
            "seen_decision": "",
        },
    )
    done = client.post(
        f"/conflicts/{READER_DISAGREEMENT_S05}/decision/confirm",
        data=hidden_fields(review.text) | {"password": PASSWORD},
        follow_redirects=False,
    )
    page = client.get(done.headers["location"]).text
    assert 'data-testid="recorded"' in page
    # one signature of two: still open, still here; the walk offers the next conflict, focused
    assert f"{here + 1} of 7" in page
    follower = order[here + 1]
    assert re.search(rf'href="/conflicts/{follower}\?study=DEMO" accesskey="n"[^>]*autofocus', page)
    assert f'href="/conflicts/{order[here - 1]}?study=DEMO" accesskey="p"' in page


def test_only_the_chair_assigns_and_members_see_theirs(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("committee")  # dr.adams, not (yet) the chair
    picked = [READER_DISAGREEMENT_S05, UNMATCHED_S09]
    form = {"csrf_token": csrf, "conflict_ids": picked, "assignee": "dr.baker"}
    before = site.positions()
    refused = client.post("/conflicts/assign", data=form)
    assert refused.status_code == 403 and "only the committee&#39;s chair assigns" in refused.text
    assert positions_changed(site, before) == {"access": 1}
    assert 'name="conflict_ids"' not in client.get("/conflicts").text  # no chair, no checkboxes
    site.app.state.web.chairs.set("dr.adams")  # as `tract users chair dr.adams` does:
    users = site.app.state.web.users
    site.platform.record(account_events(users, ["dr.adams"], "CHAIR", "cli:admin"))
    assert 'name="conflict_ids"' in client.get("/conflicts").text
    done = client.post("/conflicts/assign", data=form, follow_redirects=False)
    assert done.status_code == 303 and "assigned_done=2" in done.headers["location"]
    assert positions_changed(site, before) == {"access": 1, "account": 1, "assignment": 2}
    baker = site.client()
    sign_in(baker, "dr.baker")
    mine = baker.get("/conflicts?assigned=me").text
    assert sorted(rows(mine)) == sorted(picked)
    assert 'data-testid="mine">Assigned to me <strong>2</strong>' in mine
    assert sorted(rows(baker.get("/conflicts?pending=1").text)) == sorted(picked)
    assert "assigned to <strong" in baker.get(f"/conflicts/{UNMATCHED_S09}").text
    trail = site.platform.audit(DEMO_STUDY).filter(pl.col("kind") == "assignment")
    assert trail["who"].to_list() == ["dr.adams", "dr.adams"]
    assert set(trail["new_value"]) == {"dr.baker"}


# -- the conflict page ---------------------------------------------------------------------------
def test_the_conflict_page_says_what_a_reviewer_needs(as_role: AsRole) -> None:
    client, _ = as_role("committee")
    page = client.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text
    assert "Rule set exosome-fistula-protocol version 2" in page
    assert "closed at the last 2 visits (FU5, FU6)" in page and "28 days apart" in page
    assert "over 20 mm in 2 or more dimensions" in page
    assert "FU6 day 300 ±7" in page and "MRI_FINAL day 300 ±14" in page
    # every status the committee may choose, defined, with its code in a tooltip
    assert "counted as not closed for the patient&#39;s category" in page
    assert 'title="NOT_EVALUABLE"' in page and "<legend>Final status</legend>" in page
    assert "about the MRI reads" in page and "Rule status" not in page
    assert 'title="READER_DISAGREEMENT">MRI readers disagree' in page


def test_the_missing_visit_is_named_once(as_role: AsRole, site: Site) -> None:
    conflicts = site.platform.adjudicate(DEMO_STUDY).conflicts
    missing = conflicts.filter(pl.col("type") == "MISSING_ASSESSMENT")["conflict_id"][0]
    client, _ = as_role("monitor")
    page = client.get(f"/conflicts/{missing}").text
    assert "missing: missing" not in page and "missing: FU5; missing: FU5" not in page
    assert "Record a new decision" not in page and 'data-testid="cannot-decide"' in page


def test_an_unmatched_tract_is_shown_beside_the_registry(as_role: AsRole) -> None:
    client, _ = as_role("committee")
    page = client.get(f"/conflicts/{UNMATCHED_S09}").text
    registry = page.split('data-testid="registry"')[1]
    assert (
        "Superficial" in registry and "12 o&#39;clock" in registry and "2 o&#39;clock" in registry
    )
    same = page.split('data-testid="same-visit"')[1].split("</table>")[0]
    assert "T1X (not registered)" in same and '<th scope="row">FU2</th>' in same
    assert same.count("grade 0 (2024-08-30)") == 3  # T1X, T1 and T2 at the same visit
    assert "T1: Superficial, 12 o&#39;clock" in page  # the mapping choices say which is which


def test_form_problems_are_shown_next_to_their_fields(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("committee")
    before = site.positions()
    response = client.post(
        f"/conflicts/{UNMATCHED_S09}/decision",
        data={"csrf_token": csrf, "study": DEMO_STUDY, "status": "MAPPED", "rationale": " "},
    )
    assert response.status_code == 400
    page = response.text
    assert 'id="maps_to-error">Choose the registry tract this evidence belongs to (T1, T2).' in page
    assert 'id="rationale-error">A rationale is required' in page
    assert 'aria-invalid="true" aria-describedby="rationale-error"' in page
    assert "members-error" not in page  # a vote is the signed-in member's own: no list
    assert '<a href="#maps_to">' in page  # the summary leads to each field
    assert "--maps-to" not in page and "got None" not in page and "got &#39;&#39;" not in page
    assert positions_changed(site, before) == {"access": 1}


def test_reads_link_to_the_core_labs_viewer(site_factory: Callable[..., Site]) -> None:
    site = site_factory(
        environ={"TRACT_WEB_IMAGE_URL": "https://pacs.example/v?s={study}&r={read_id}"}
    )
    client = site.client()
    sign_in(client, "dr.adams")
    page = client.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text
    assert 'href="https://pacs.example/v?s=DEMO&amp;r=RD-S05-T2-FINAL-R1"' in page
    assert 'rel="noopener noreferrer"' in page
    with pytest.raises(WebConfigError, match="URL using only"):
        WebSettings.from_env(site.home, environ={"TRACT_WEB_IMAGE_URL": "https://x/{reader_id}"})


# -- the subject page ------------------------------------------------------------------------------
def test_a_subject_page_holds_everything_about_one_patient(as_role: AsRole) -> None:
    client, _ = as_role("data_manager")
    listing = client.get("/subjects").text
    assert listing.count("data-subject=") >= 23 and "SITE01" in listing
    page = client.get(f"/subjects/S09?study={DEMO_STUDY}").text
    tracts = page.split('data-testid="tracts"')[1].split("</table>")[0]
    assert "Superficial" in tracts and "12 o&#39;clock" in tracts and "2 o&#39;clock" in tracts
    grid = page.split('data-testid="visit-grid"')[1].split("</table>")[0]
    assert all(v in grid for v in ("INJ1", "FU6")) and "T1X" in grid
    assert 'data-testid="mri-T1-MRI_FINAL"' in page and "Reader 1 (RAD-A)" in page
    assert "Tract not in the registry" in page  # its conflict, linked
    queries = page.split('data-testid="subject-queries"')[1].split("</table>")[0]
    assert "examiner_id is required" in queries
    assert client.get(f"/subjects/S99?study={DEMO_STUDY}").status_code == 404


def test_the_committee_sees_no_outcomes_of_a_subject_without_a_conflict(
    as_role: AsRole,
) -> None:
    client, _ = as_role("committee")
    quiet = client.get(f"/subjects/S01?study={DEMO_STUDY}").text
    assert 'data-testid="outcomes-withheld"' in quiet and "<svg" not in quiet
    assert 'data-testid="category"' not in quiet and "RAD-A" not in quiet
    disputed = client.get(f"/subjects/S05?study={DEMO_STUDY}").text
    assert 'data-testid="outcomes-withheld"' not in disputed and "<svg" in disputed
    assert 'data-testid="category"' not in disputed  # categories add up to the results


# -- site queries ----------------------------------------------------------------------------------
def test_the_data_manager_works_the_site_queries(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("data_manager")
    page = client.get("/queries").text
    assert page.count("data-query=") == 14 and 'data-testid="csv-SITE01"' in page
    query = re.search(r'data-query="(Q-[0-9a-f]{12})"', page).group(1)
    form = {"csrf_token": csrf, "study": DEMO_STUDY, "query_ids": [query], "action": "CLOSED"}
    refused = client.post("/queries/act", data=form)
    assert refused.status_code == 409 and "why you close it unanswered" in refused.text
    assert f'value="{query}" aria-label="Select {query}" checked' in refused.text  # kept ticked
    answered = client.post(
        "/queries/act",
        data=form | {"action": "ANSWERED", "note": "site: typo, row follows"},
        follow_redirects=False,
    )
    assert answered.status_code == 303
    after = client.get(answered.headers["location"]).text
    assert 'data-testid="query-done"' in after and "site: typo, row follows" in after
    monitor, monitor_csrf = TestClient(site.app), None
    sign_in(monitor, "mon.lee")
    listing = monitor.get("/queries").text
    assert "data-query=" in listing and "/queries/act" not in listing
    monitor_csrf = re.search(r'name="csrf_token" value="([^"]+)"', listing).group(1)
    blocked = monitor.post("/queries/act", data=form | {"csrf_token": monitor_csrf})
    assert blocked.status_code == 403 and "role monitor may not query" in blocked.text


def test_the_sites_get_their_queries_as_csv(as_role: AsRole) -> None:
    client, _ = as_role("monitor")
    export = client.get("/queries.csv?site=SITE01")
    assert export.headers["content-type"].startswith("text/csv")
    assert 'filename="queries-DEMO-SITE01-' in export.headers["content-disposition"]
    lines = export.text.strip().splitlines()
    assert lines[0].startswith("site_id,subject_id,tract_id,query_id") and len(lines) == 15


# -- the lock on the page --------------------------------------------------------------------------
def _locked(site: Site, client: TestClient, csrf: str, lock_id: str = "PRIMARY") -> str:
    """The study locked through the page (the test is marked ``decided``)."""
    review = client.post(
        "/lock",
        data={"csrf_token": csrf, "study": DEMO_STUDY, "lock_id": lock_id, "reason": "primary"},
    )
    assert review.status_code == 200, review.text
    done = client.post(
        "/lock/confirm",
        data=hidden_fields(review.text)
        | {"queries_reason": "answered after the lock", "password": PASSWORD},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    return done.headers["location"]


@pytest.mark.decided
def test_the_confirmation_shows_what_will_be_frozen(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("data_manager")
    review = client.post(
        "/lock", data={"csrf_token": csrf, "study": DEMO_STUDY, "lock_id": "L1", "reason": "x"}
    ).text
    counts = review.split('data-testid="lock-counts"')[1].split("</table>")[0]
    assert '<th scope="row">subjects</th><td class="num">23</td>' in counts
    assert (
        '<th scope="row">treated tracts</th><td class="num">48</td>' in counts
    )  # 43 of completers + 5 of withdrawn
    assert 'rejected rows (dead letters)</th><td class="num">10' in counts
    assert review.count("<tr><td>SITE01 / ") == 14  # every query not closed, listed
    assert 'name="queries_reason"' in review


@pytest.mark.decided
def test_a_lock_is_refused_if_the_queries_changed_since_the_review(
    site: Site, as_role: AsRole
) -> None:
    client, csrf = as_role("data_manager")
    review = client.post(
        "/lock", data={"csrf_token": csrf, "study": DEMO_STUDY, "lock_id": "L1", "reason": "x"}
    )
    query = site.platform.queries(DEMO_STUDY)["query_id"][0]
    site.platform.act_on_query(DEMO_STUDY, query, "CLOSED", "not real data", "dm.jones")
    refused = client.post(
        "/lock/confirm",
        data=hidden_fields(review.text) | {"queries_reason": "later", "password": PASSWORD},
    )
    assert refused.status_code == 409 and "changed since you reviewed this lock" in refused.text
    assert site.platform.records("lock", DEMO_STUDY).collect().is_empty()


@pytest.mark.decided
def test_a_used_lock_id_is_refused_at_the_review_next_to_the_field(
    site: Site, as_role: AsRole
) -> None:
    client, csrf = as_role("data_manager")
    _locked(site, client, csrf)
    again = client.post(
        "/lock",
        data={"csrf_token": csrf, "study": DEMO_STUDY, "lock_id": "PRIMARY", "reason": "new"},
    )
    assert again.status_code == 409
    assert "Lock id PRIMARY is already used (by dm.jones" in again.text
    assert "DEMO is locked (PRIMARY" in again.text and "Confirm and lock" not in again.text


@pytest.mark.decided
def test_lock_history_receipt_files_and_the_locked_report(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("data_manager")
    page = client.get(_locked(site, client, csrf)).text
    receipt = site.platform.lock_event(DEMO_STUDY, "PRIMARY")["manifest_sha256"]
    assert 'data-testid="locked"' in page and receipt in page
    assert "14 (10 open, 4 answered); reason given: “answered after the lock”" in page
    compare = page.split('data-testid="compare"')[1].split("</table>")[0]
    assert "Full closure" in compare and "<strong>changed</strong>" not in compare
    files = page.split('data-testid="lock-files"')[1]
    assert "tract_outcomes.parquet" in files
    history = client.get("/locks").text.split('data-testid="lock-history"')[1]
    assert receipt in history and "in force" in history and "answered after the lock" in history


@pytest.mark.decided
def test_the_download_is_the_verified_lock(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("data_manager")
    _locked(site, client, csrf)
    response = client.get(f"/locks/PRIMARY/download?study={DEMO_STUDY}")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    manifest = archive.read(f"{DEMO_STUDY}-PRIMARY/manifest.json")
    assert sha256(manifest) == site.platform.lock_event(DEMO_STUDY, "PRIMARY")["manifest_sha256"]
    for name, entry in json.loads(manifest)["files"].items():
        assert sha256(archive.read(f"{DEMO_STUDY}-PRIMARY/{name}")) == entry["sha256"]
    committee, _ = TestClient(site.app), None
    sign_in(committee, "dr.adams")
    refused = committee.get(f"/locks/PRIMARY/download?study={DEMO_STUDY}")
    assert refused.status_code == 403 and "unblinded" in refused.text
    # a file altered in the store is refused, named
    key = f"{lock_prefix(DEMO_STUDY, 'PRIMARY')}/tract_outcomes.parquet"
    (site.home / "objects" / key).write_bytes(b"forged")
    tampered = client.get(f"/locks/PRIMARY/download?study={DEMO_STUDY}")
    assert tampered.status_code == 409 and "tract_outcomes.parquet does not match" in tampered.text


def test_the_audit_trail_pages_through_every_row(as_role: AsRole) -> None:
    client, _ = as_role("monitor")
    first = client.get("/audit").text
    total = int(re.search(r"(\d+) of (\d+) rows match", first).group(2))
    assert total > 100 and f"page 1 of {-(-total // 100)}" in first
    last = client.get(f"/audit?page={-(-total // 100)}").text
    assert last.count('<tr><td class="small nowrap">') == total - 100 * (-(-total // 100) - 1)


@pytest.mark.decided
def test_the_lock_page_takes_the_signed_unlock(site: Site, as_role: AsRole) -> None:
    """The unlock from the lock page: the data manager signs the request there, two others
    sign their approvals there, and the history then says who undid the lock."""
    site.platform.lock(DEMO_STUDY, "L1", "primary analysis", "dm.jones", open_queries_reason="x")
    manager, csrf = as_role("data_manager")
    page = manager.get("/locks").text
    assert 'data-testid="unlock-request-form"' in page and 'name="back" value="/locks"' in page
    assert "tract unlock" not in page  # the page, not a terminal command
    form = {"csrf_token": csrf, "study": DEMO_STUDY, "lock_id": "L1", "back": "/locks"}
    refused = manager.post("/unlock/request", data=form | {"reason": "late", "password": "no"})
    assert refused.status_code == 403 and "<h1>Database locks</h1>" in refused.text
    assert 'data-testid="unlock-refusal"' in refused.text
    done = manager.post(
        "/unlock/request",
        data=form | {"reason": "late central reads", "password": PASSWORD},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].startswith("/locks?")
    assert 'data-testid="unlock-signed"' in manager.get(done.headers["location"]).text
    [asked] = site.platform.unlock_requests(DEMO_STUDY)
    for role in ("approver", "admin"):
        client, token = as_role(role)
        assert "Sign approval" in client.get("/locks").text
        signed = client.post(
            "/unlock/approve",
            data={
                "csrf_token": token,
                "study": DEMO_STUDY,
                "request_id": asked.request_id,
                "password": PASSWORD,
                "back": "/locks",
            },
            follow_redirects=False,
        )
        assert signed.status_code == 303 and signed.headers["location"].startswith("/locks?")
    history = manager.get("/locks").text.split('data-testid="lock-history"')[1]
    row = history.split('data-lock="L1"')[1].split("</tr>")[0]
    assert "unlocked" in row and "late central reads" in row and "qa.ng" in row
    evil = manager.post(
        "/unlock/request",
        data=form | {"back": "//evil.example/", "reason": "x", "password": "no"},
    )
    assert "<h1>Database locks</h1>" not in evil.text  # only / and /locks are places to return


def test_the_audit_trail_of_one_subject_counts_that_subjects_rows(as_role: AsRole) -> None:
    client, _ = as_role("monitor")
    whole = client.get("/audit.csv").text.splitlines()
    mine = [line for line in whole[1:] if ",S05," in line]
    page = client.get("/audit?subject=s05").text
    assert f"of subject S05's {len(mine)} rows match" in page
    export = client.get("/audit.csv?subject=s05").text.splitlines()
    assert sorted(export[1:]) == sorted(mine) and export[0] == whole[0]
