"""Every route, every role and every refusal, over HTTP in-process (FastAPI's TestClient).

A refusal must write nothing but its own access record: each refusal test compares the log's
positions before and after and allows exactly one new event, on the ``access`` topic.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sqlite3
from collections.abc import Callable

import polars as pl
import pytest
from fastapi.testclient import TestClient

from services.accounts import account_events
from services.demo.trial import DEMO_STUDY
from tests.web.conftest import (
    PASSWORD,
    PEOPLE,
    READER_DISAGREEMENT_S05,
    UNMATCHED_S09,
    Site,
    csrf_of,
    hidden_fields,
    later,
    sign_in,
)

PAGES = ["/", "/conflicts", f"/conflicts/{READER_DISAGREEMENT_S05}", "/audit", "/audit.csv"]
AsRole = Callable[[str], tuple[TestClient, str]]


def access_rows(site: Site) -> list[dict]:
    frame = site.platform.records("access", "*").collect()
    frame = pl.concat([frame, site.platform.records("access", DEMO_STUDY).collect()])
    return frame.sort("at", "offset").to_dicts()


def only_access_added(site: Site, before: dict[str, int], count: int = 1) -> None:
    after = site.positions()
    changed = {t: after.get(t, 0) - before.get(t, 0) for t in after if after[t] != before.get(t)}
    assert changed == {"access": count}, changed


def decision_form(csrf: str, **overrides: object) -> dict[str, object]:
    form: dict[str, object] = {
        "csrf_token": csrf,
        "study": DEMO_STUDY,
        "status": "CLOSED",
        "rationale": "ADJ-equivalent consensus read at the committee: no T2 signal",
        "seen_fingerprint": "",
        "seen_decision": "",
        "password": PASSWORD,
    }
    return form | overrides


# -- sign-in ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PAGES)
def test_pages_send_strangers_to_sign_in(site: Site, path: str) -> None:
    response = site.client().get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


def test_sign_in_sets_a_hardened_session_cookie_and_is_audited(site: Site) -> None:
    client = site.client()
    page = client.get("/login")
    assert "csrf_token" in page.text and "tract_login" in page.headers["set-cookie"]
    response = client.post(
        "/login",
        data={"username": "dr.adams", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = next(c for c in response.headers.get_list("set-cookie") if "tract_session=" in c)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http in this test: "auto" follows the scheme
    last = access_rows(site)[-1]
    assert (last["who"], last["role"], last["action"], last["outcome"]) == (
        "dr.adams",
        "committee",
        "SIGN_IN",
        "ALLOWED",
    )
    assert client.get("/").status_code == 200


def test_secure_cookies_can_be_forced(site_factory: Callable[..., Site]) -> None:
    site = site_factory(secure_cookies="1")
    client = TestClient(site.app, base_url="https://testserver")  # a Secure cookie needs https
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"username": "dr.adams", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert "Secure" in response.headers["set-cookie"]


def test_wrong_password_is_refused_generically_and_audited(site: Site) -> None:
    client = site.client()
    before = site.positions()
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"username": "dr.adams", "password": "wrong", "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 401
    assert "unknown user or wrong password" in response.text
    assert "tract_session=" not in response.headers.get("set-cookie", "")
    only_access_added(site, before)
    last = access_rows(site)[-1]
    assert (last["action"], last["outcome"], last["detail"]) == (
        "SIGN_IN",
        "REFUSED",
        "wrong password",
    )


def test_unknown_user_reads_like_a_wrong_password(site: Site) -> None:
    client = site.client()
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"username": "nobody", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
    )
    assert response.status_code == 401 and "unknown user or wrong password" in response.text
    assert access_rows(site)[-1]["detail"] == "unknown user"


def test_sign_in_without_its_csrf_token_is_refused(site: Site) -> None:
    client = site.client()
    client.get("/login")
    before = site.positions()
    response = client.post("/login", data={"username": "dr.adams", "password": PASSWORD})
    assert response.status_code == 403 and "CSRF" in response.text
    only_access_added(site, before)
    assert "tract_session=" not in response.headers.get("set-cookie", "")


def test_sign_in_never_redirects_off_site(site: Site) -> None:
    client = site.client()
    page = client.get("/login?next=//evil.example/x")
    assert 'value="/"' in page.text
    response = client.post(
        "/login",
        data={
            "username": "dr.adams",
            "password": PASSWORD,
            "csrf_token": csrf_of(page.text),
            "next": "https://evil.example/",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_sign_in_returns_to_the_page_asked_for(site: Site) -> None:
    client = site.client()
    target = f"/conflicts/{READER_DISAGREEMENT_S05}"
    page = client.get(target)  # redirected to the sign-in form
    assert page.url.path == "/login"
    response = client.post(
        "/login",
        data={
            "username": "mon.lee",
            "password": PASSWORD,
            "csrf_token": csrf_of(page.text),
            "next": target,
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == target


def test_repeated_failures_lock_the_account_out(site_factory: Callable[..., Site]) -> None:
    site = site_factory(max_failed_sign_ins=2)
    client = site.client()
    for _ in range(2):
        page = client.get("/login")
        client.post(
            "/login",
            data={"username": "dr.adams", "password": "x", "csrf_token": csrf_of(page.text)},
        )
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"username": "dr.adams", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
    )
    assert response.status_code == 401
    assert "locked out" in access_rows(site)[-1]["detail"]


def test_sign_out_ends_the_session(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("committee")
    response = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert access_rows(site)[-1]["action"] == "SIGN_OUT"
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_stolen_cookie_dies_with_sign_out(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("committee")
    stolen = dict(client.cookies)
    client.post("/logout", data={"csrf_token": csrf})
    thief = site.client()
    thief.cookies.update(stolen)
    assert thief.get("/", follow_redirects=False).status_code == 303


def test_a_tampered_cookie_is_no_session(site: Site) -> None:
    client = site.client()
    client.cookies.set("tract_session", "forged.value")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_removed_user_loses_their_session_at_once(site: Site, as_role: AsRole) -> None:
    client, _ = as_role("committee")
    site.users.remove("dr.adams")
    assert client.get("/", follow_redirects=False).status_code == 303


# -- every page, every role ---------------------------------------------------------------------
@pytest.mark.parametrize("role", sorted(set(PEOPLE.values())))
def test_every_role_reads_every_page(site: Site, as_role: AsRole, role: str) -> None:
    client, _ = as_role(role)
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        assert response.headers["cache-control"] == "no-store"
        assert "script-src" not in response.headers["content-security-policy"]
        assert "default-src 'none'" in response.headers["content-security-policy"]


def test_an_outcome_edited_in_the_state_files_never_shows_on_the_subject_page(
    site: Site, as_role: AsRole
) -> None:
    """Insider: a subject's outcomes rewritten in the state's files (what the pages read) no
    longer show on that subject's page: it shows what the log gives, and says the kept files
    differ (naming the tables, not their values: a role may not see outcomes)."""
    client, _ = as_role("data_manager")
    path = f"/subjects/S02?study={DEMO_STUDY}"
    honest = client.get(path).text
    assert 'data-testid="state-differs"' not in honest

    state = site.home / "state" / DEMO_STUDY
    generation = state / (state / "CURRENT").read_text().strip()
    for bucket in generation.glob("tracts/*.parquet"):
        frame = pl.read_parquet(bucket)
        flipped = pl.when(pl.col("outcome") == "CLOSED").then(pl.lit("NOT_CLOSED"))
        frame.with_columns(
            outcome=pl.when(pl.col("subject_id") == "S02")
            .then(flipped.otherwise(pl.lit("CLOSED")))
            .otherwise(pl.col("outcome"))
        ).write_parquet(bucket)
    kept = site.platform.outcomes(DEMO_STUDY, ["S02"]).tracts["outcome"].to_list()
    assert (
        kept != site.platform.checked_outcomes(DEMO_STUDY, ["S02"])[0].tracts["outcome"].to_list()
    )

    edited = client.get(path).text
    assert 'data-testid="state-differs"' in edited and "(tracts)" in edited
    table = 'data-testid="tracts"'
    assert (
        edited[edited.index(table) :].split("</table>")[0]
        == (honest[honest.index(table) :].split("</table>")[0])
    )  # the log's outcomes, as before the edit


def test_health_needs_no_sign_in(site: Site) -> None:
    assert site.client().get("/healthz").json() == {"status": "ok"}


def test_an_unknown_page_is_404(site: Site, as_role: AsRole) -> None:
    client, _ = as_role("committee")
    assert client.get("/nope").status_code == 404


# -- dashboard ----------------------------------------------------------------------------------
def test_dashboard_shows_the_report_agreement_plot_and_readiness(as_role: AsRole) -> None:
    client, _ = as_role("data_manager")
    page = client.get("/").text
    assert "Completers (n = 20)" in page
    assert "Clopper-Pearson" in page and "clustered in 20 patients" in page
    for name in ("ADMIRE_COMBINED", "CLINICAL_ONLY", "RESPONSE_50"):
        assert name in page
    assert "kappa" in page and "0.830" in page
    assert "<svg" in page and "Tract status over visits" in page
    assert "Not ready to lock: 7 open conflict(s)" in page
    assert "Never locked." in page
    assert 'data-testid="category-S05">Pending' in page  # the code stays in the tooltip


def test_a_large_study_s_dashboard_lists_the_first_patients_and_says_where_the_rest_are(
    as_role: AsRole, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 100,000-subject study's dashboard drew a swimmer lane for every tract (minutes,
    megabytes): it lists the first patients, lanes and open conflicts, counts them all and
    links to the pages that have them all (the demo, with 5 shown instead of 100)."""
    from services.web import views

    client, _ = as_role("data_manager")
    whole = client.get("/").text
    monkeypatch.setattr(views, "DASHBOARD_SUBJECTS", 5)
    page = client.get("/").text
    rows = page.split('data-testid="patients"')[1].split("</table>")[0]
    first = sorted(set(re.findall(r'data-subject="([^"]+)"', whole)))[:5]
    assert re.findall(r'data-subject="([^"]+)"', rows) == first
    lanes = page.split('aria-label="Swimmer plot')[1].split("</svg>")[0]
    assert set(re.findall(r"/subjects/([^?\"]+)\?study=", lanes)) == set(first)
    assert "The first 5 of 23 patients" in page and 'href="/subjects?study=DEMO"' in page
    assert page.split('data-testid="blocking-conflicts"')[1].split("</ul>")[0].count("<li>") == 5
    assert "The first 5 of 7 open conflicts" in page
    assert "Not ready to lock: 7 open conflict(s)" in page  # readiness counts them all
    assert "The first" not in whole  # the demo's 23 patients are all listed


def test_an_unknown_study_is_404(as_role: AsRole) -> None:
    client, _ = as_role("monitor")
    response = client.get("/?study=NOPE")
    assert response.status_code == 404 and "no study &#39;NOPE&#39;" in response.text


# -- conflict queue -----------------------------------------------------------------------------
def test_queue_lists_open_conflicts_with_counts_per_type(as_role: AsRole) -> None:
    client, _ = as_role("committee")
    page = client.get("/conflicts").text
    assert page.count("data-conflict=") == 7
    assert (
        'data-testid="count-UNMATCHED_TRACT" title="UNMATCHED_TRACT">Tract not in the registry '
        "<strong>2</strong>" in page
    )
    assert (
        'data-testid="count-READER_DISAGREEMENT" title="READER_DISAGREEMENT">MRI readers '
        "disagree <strong>1</strong>" in page
    )
    assert "overdue" not in page.split("<table")[1]  # raised today


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("type=UNMATCHED_TRACT", 2),
        ("subject=s05", 1),
        ("subject=S99", 0),
        ("status=DECIDED", 0),
        ("status=ALL&type=CLINICAL_MRI_DISCORDANCE", 2),
        (f"study={DEMO_STUDY}", 7),
    ],
)
def test_queue_filters(as_role: AsRole, query: str, expected: int) -> None:
    client, _ = as_role("monitor")
    page = client.get(f"/conflicts?{query}")
    assert page.status_code == 200
    assert page.text.count("data-conflict=") == expected


@pytest.mark.parametrize("query", ["status=MAYBE", "type=NOT_A_TYPE"])
def test_queue_refuses_unknown_filter_values(as_role: AsRole, query: str) -> None:
    client, _ = as_role("monitor")
    response = client.get(f"/conflicts?{query}")
    assert response.status_code == 400 and "must be one of" in response.text


def test_old_open_conflicts_are_highlighted_as_overdue(site_factory: Callable[..., Site]) -> None:
    site = site_factory(clock=later(20), overdue_days=14)
    client = site.client()
    sign_in(client, "dr.adams")
    page = client.get("/conflicts").text
    assert page.count('class="overdue"') == 7
    assert "7 overdue" in page and "overdue after 14 days" in page


def test_the_overdue_threshold_comes_from_the_environment(
    site_factory: Callable[..., Site],
) -> None:
    site = site_factory(clock=later(20), environ={"TRACT_WEB_OVERDUE_DAYS": "30"})
    client = site.client()
    sign_in(client, "dr.adams")
    page = client.get("/conflicts").text
    assert 'class="overdue"' not in page and "overdue after 30 days" in page


# -- conflict page ------------------------------------------------------------------------------
def test_conflict_page_shows_the_evidence_side_by_side(as_role: AsRole) -> None:
    client, _ = as_role("committee")
    page = client.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text
    for visit in ("INJ1", "INJ2", "INJ3", "FU1", "FU2", "FU3", "FU4", "FU5", "FU6"):
        assert f'data-visit="{visit}"' in page
    assert 'data-testid="mri-MRI_FINAL"' in page and 'data-testid="mri-MRI_BL"' in page
    assert (
        '<th scope="col">Reader 1</th><th scope="col">Reader 2</th>'
        '<th scope="col">Adjudicator</th>' in page
    )
    assert 'class="differs"><td>T2-hyperintense tract <span class="differs-mark">' in page
    assert "CD68+ macrophages" in page and "INJ1 → INJ3" in page
    for rule in ("clinical.sustained", "mri.consensus", "primary.closure", "discharge.improved"):
        assert rule in page
    assert "R1 and R2 disagree; no evaluable adjudicator read" in page
    assert "Review your vote" in page and 'name="members"' not in page
    assert "You vote as Dr Anna Adams (dr.adams)" in page


def test_committee_members_are_blinded_to_readers_and_treatment(as_role: AsRole) -> None:
    client, _ = as_role("committee")
    page = client.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text
    assert "RAD-A" not in page and "RAD-B" not in page
    assert "Reader identities are blinded" in page
    assert "volume" not in page.lower() and "INJ-S05" not in page
    audit = client.get("/audit?subject=S05").text
    assert "RAD-A" not in audit and "[blinded reader]" in audit
    export = client.get("/audit.csv?subject=S05").text
    assert "RAD-A" not in export


def test_monitors_see_reader_identities_but_cannot_decide(as_role: AsRole) -> None:
    client, _ = as_role("monitor")
    page = client.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text
    assert "Reader 1 (RAD-A)" in page and "Reader 2 (RAD-B)" in page
    assert 'data-testid="cannot-decide"' in page and "Review your vote" not in page
    assert "volume" not in page.lower()


def test_an_exam_correction_shows_with_its_reason(site: Site, as_role: AsRole) -> None:
    client, _ = as_role("committee")
    conflicts = site.platform.adjudicate(DEMO_STUDY).conflicts
    assert conflicts.height  # the demo's S02/T1 FU6 exam was corrected; no conflict there, so
    # look at it through a conflict on the same page family: the evidence view of S12/T1.
    page = client.get("/conflicts/C-9b393fc40ac3").text
    assert "external opening CLOSED with drainage on compression" in page
    assert 'data-visit="FU3"' in page and "INCONSISTENT" in page


def test_an_unknown_conflict_is_404(as_role: AsRole) -> None:
    client, _ = as_role("committee")
    response = client.get("/conflicts/C-000000000000")
    assert response.status_code == 404 and "no conflict C-000000000000" in response.text


# -- decisions ----------------------------------------------------------------------------------
def _review(client: TestClient, csrf: str, conflict_id: str, **form: object):
    """Step 1 as the conflict page's form posts it (with the fingerprint the page showed)."""
    shown = hidden_fields(client.get(f"/conflicts/{conflict_id}").text)
    seen = {k: shown[k] for k in ("seen_fingerprint", "seen_decision") if k in shown}
    return client.post(
        f"/conflicts/{conflict_id}/decision", data=decision_form(csrf, **(seen | form))
    )


def _sign(client: TestClient, review_html: str, password: str = PASSWORD, **extra: str):
    """Step 2: the confirmation page's form, signed with ``password``."""
    action = review_html.split('/decision/confirm"')[0].rsplit('action="', 1)[1]
    action += "/decision/confirm"
    return client.post(
        action,
        data=hidden_fields(review_html) | {"password": password} | extra,
        follow_redirects=False,
    )


def test_a_vote_needs_review_then_the_members_own_signature(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("committee")
    before = site.positions()
    review = _review(client, csrf, READER_DISAGREEMENT_S05)
    assert review.status_code == 200 and "Sign your vote" in review.text
    assert 'data-testid="meaning">decided CLOSED' in review.text
    assert 'data-testid="signer">Dr Anna Adams (dr.adams)' in review.text
    assert 'type="password"' in review.text
    assert site.positions() == before  # nothing recorded by the review step
    for password in ("", "not my password"):  # no signature, no vote
        refused = _sign(client, review.text, password)
        assert refused.status_code == 403 and "signature refused" in refused.text
        assert 'type="password"' in refused.text  # the confirmation page again, to sign
        only_access_added(site, before)
        before = site.positions()
    response = _sign(client, review.text)
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"/conflicts/{READER_DISAGREEMENT_S05}?")
    page = client.get(response.headers["location"]).text
    assert 'data-testid="recorded"' in page
    # one signature is not a decision
    assert 'data-testid="conflict-status">Open' in page
    assert "1 of 2 signatures for CLOSED: waiting for 1 more concordant vote" in page
    assert "Dr Anna Adams (dr.adams), " in page and "UTC: decided CLOSED" in page
    [vote] = site.platform.votes(DEMO_STUDY).to_dicts()
    assert (vote["voter"], vote["printed_name"], vote["signed_via"]) == (
        "dr.adams",
        "Dr Anna Adams",
        "web",
    )
    assert vote["authentication"].startswith("password re-entered (web session s-")
    # a second member concurs from their own session: the decision takes effect
    baker = site.client()
    sign_in(baker, "dr.baker")
    page = baker.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text
    assert "Concur (review" in page
    concur = hidden_fields(page.split('action="/conflicts/')[1].split("</form>")[0])
    review = baker.post(
        f"/conflicts/{READER_DISAGREEMENT_S05}/decision",
        data={k: v for k, v in concur.items()},
    )
    assert 'data-testid="signer">Dr Ben Baker (dr.baker)' in review.text
    page = baker.get(_sign(baker, review.text).headers["location"]).text
    assert 'data-testid="conflict-status">Decided' in page
    assert "in force" in page and 'data-testid="outcome">Closed' in page
    history = page.split('data-testid="history"')[1].split("</table>")[0]
    assert "Dr Anna Adams (dr.adams)" in history and "Dr Ben Baker (dr.baker)" in history
    # The report follows: S05's second tract closes, so S05 is now a full closure (which the
    # data manager sees; the committee is kept away from the study's results).
    data_manager, _ = as_role("data_manager")
    assert 'data-testid="category-S05">Full closure' in data_manager.get("/").text
    assert 'data-testid="results-hidden"' in client.get("/").text
    audit = client.get("/audit?kind=committee_vote").text
    assert "Dr Anna Adams (dr.adams)" in audit and "decided CLOSED (signed, web)" in audit
    assert "signed by dr.adams, dr.baker" in client.get("/audit?kind=committee_decision").text


def test_a_vote_is_only_ever_the_signed_in_members_own(site: Site, as_role: AsRole) -> None:
    """Issue 9, item 1: the free-text "other members" box and the member checkboxes counted
    toward the quorum, for names such as ghost.one, =1+1 and an HTML string."""
    client, csrf = as_role("committee")
    forged = {
        "members": ["dr.baker", "ghost.one", "=1+1"],
        "other_members": "<b>dr.clarke</b>; ghost.two",
        "voter": "dr.baker",
        "username": "dr.baker",
    }
    review = _review(client, csrf, READER_DISAGREEMENT_S05, **forged)
    assert review.status_code == 200
    assert "ghost.one" not in review.text and "dr.baker" not in review.text
    response = _sign(client, review.text, **{k: str(v) for k, v in forged.items()})
    assert response.status_code == 303
    votes = site.platform.votes(DEMO_STUDY)
    assert votes["voter"].to_list() == ["dr.adams"]
    row = site.platform.find_conflict(READER_DISAGREEMENT_S05, DEMO_STUDY)[1]
    assert (row["status"], row["decision_id"]) == ("OPEN", None)


def _sign_in_again(site: Site, name: str):
    """A sign-in from a new client with the right password, the answer unfollowed."""
    client = site.client()
    login = client.get("/login")
    form = {"username": name, "password": PASSWORD, "csrf_token": csrf_of(login.text)}
    return client.post("/login", data=form, follow_redirects=False)


def test_an_account_whose_password_hash_was_replaced_cannot_sign_in(site: Site) -> None:
    """A member's and a data manager's password hashes replaced in the store's file (here with
    the same password: any hash the insider wrote): neither signs in, so neither signs a vote
    or a lock on the page (the signature's own check is tested at the terminal)."""
    for name in ("dr.adams", "dm.jones"):
        # the store's own method, no `tract users`: as any hash the insider wrote
        site.users.set_password(name, PASSWORD, temporary=False)
        refused = _sign_in_again(site, name)
        assert refused.status_code == 403
        assert f"{name}&#39;s password hash in the user store differs" in refused.text
        assert f"`tract users record {name}`" in refused.text
    assert site.platform.votes(DEMO_STUDY).is_empty()


def test_a_password_an_administrator_set_opens_only_the_page_to_change_it(site: Site) -> None:
    """A member whose password an administrator set (`tract users add` or `passwd`) signs in to
    one page: choosing their own. Every other page sends them there, every form but that one
    and sign-out is refused, and once changed the member signs with a password only they know;
    the log records the change as theirs."""
    temporary, own = "an administrator's password", "my own secret words"
    site.users.set_password("dr.adams", temporary)  # as `tract users passwd dr.adams` does
    site.platform.record(account_events(site.users, ["dr.adams"], "PASSWORD", "cli:admin"))
    client = site.client()
    login = client.get("/login")
    form = {"username": "dr.adams", "password": temporary, "csrf_token": csrf_of(login.text)}
    signed_in = client.post("/login", data=form, follow_redirects=False)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/password"
    for page in ("/", "/conflicts", f"/conflicts/{READER_DISAGREEMENT_S05}", "/audit"):
        moved = client.get(page, follow_redirects=False)
        assert moved.status_code == 303 and moved.headers["location"] == "/password", page
    page = client.get("/password")
    assert "set by an administrator" in page.text
    csrf = csrf_of(page.text)
    before = site.positions()
    refused = _review(client, csrf, READER_DISAGREEMENT_S05)
    assert refused.status_code == 403 and "choose your own at /password" in refused.text
    only_access_added(site, before)
    for current, new, again, why in (
        ("a wrong guess", own, own, "wrong password"),
        (temporary, own, "other words here", "the two new passwords differ"),
        (temporary, "short", "short", "at least 10 characters"),
        (temporary, temporary, temporary, "other than the current one"),
    ):
        form = {"csrf_token": csrf, "current": current, "new": new, "again": again}
        answer = client.post("/password", data=form)
        assert answer.status_code == 400 and why in answer.text, why
    form = {"csrf_token": csrf, "current": temporary, "new": own, "again": own}
    changed = client.post("/password", data=form, follow_redirects=False)
    assert changed.status_code == 303 and changed.headers["location"] == "/"
    dashboard = client.get("/", follow_redirects=False)
    assert dashboard.status_code == 200 and '<a href="/password"' in dashboard.text  # again later
    record = (
        site.platform.records("account", "*")
        .filter(pl.col("username") == "dr.adams")
        .sort("offset")
        .collect()
        .row(-1, named=True)
    )
    assert (record["by"], record["action"], record["temporary"]) == (
        "user:dr.adams",
        "PASSWORD",
        False,
    )
    review = _review(client, csrf_of(client.get("/no-such-page").text), READER_DISAGREEMENT_S05)
    assert _sign(client, review.text, own).status_code == 303
    assert site.platform.votes(DEMO_STUDY)["voter"].to_list() == ["dr.adams"]


def test_an_account_changed_in_the_user_store_cannot_use_the_page(
    site: Site, as_role: AsRole
) -> None:
    """A monitor's role raised to data manager in the store's file: their open session ends at
    the next request (no unblinded results, no lock page) and signing in again is refused,
    saying why, in the audit trail too."""
    client, _ = as_role("monitor")
    assert client.get("/").status_code == 200
    monitor = next(name for name, role in PEOPLE.items() if role == "monitor")
    with sqlite3.connect(site.users.path) as db:
        db.execute("UPDATE users SET role = 'data_manager' WHERE username = ?", (monitor,))
    page = client.get("/", follow_redirects=False)
    assert page.status_code in (302, 303, 307) and "/login" in page.headers["location"]
    refused = _sign_in_again(site, monitor)
    assert refused.status_code == 403
    assert (
        f"{monitor}&#39;s role in the user store differs from the log&#39;s record" in refused.text
    )
    trail = site.platform.records("access", "*").collect().filter(pl.col("who") == monitor)
    assert trail.row(-1, named=True)["outcome"] == "REFUSED"


def test_votes_are_blinded_like_any_text(site: Site, as_role: AsRole) -> None:
    site.vote(READER_DISAGREEMENT_S05, "dr.baker", "CLOSED", "RAD-B over-read the T2 signal")
    committee, _ = as_role("committee")
    page = committee.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text
    assert "RAD-B" not in page and "[blinded reader] over-read the T2 signal" in page
    assert "RAD-B" not in committee.get("/audit.csv?kind=committee_vote").text
    monitor, _ = as_role("monitor")
    assert "RAD-B over-read" in monitor.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text


def test_discordant_votes_are_shown_side_by_side(site: Site, as_role: AsRole) -> None:
    """Issue 9, item 1: CLOSED then NOT_CLOSED within a minute, each "in force" in turn."""
    site.vote(READER_DISAGREEMENT_S05, "dr.adams", "CLOSED", "healed on review")
    site.vote(READER_DISAGREEMENT_S05, "dr.baker", "NOT_CLOSED", "fluid persists")
    client, _ = as_role("monitor")
    page = client.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text
    assert 'data-testid="conflict-status">Open' in page
    sides = page.split('data-testid="discordant"')[1].split("</section>")[0]
    assert "Dr Anna Adams (dr.adams)" in sides and "Dr Ben Baker (dr.baker)" in sides
    assert "healed on review" in sides and "fluid persists" in sides
    assert "discordant votes" in page and "No decision yet." in page


def test_a_mapping_decision_names_the_registry_tract(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("committee")
    conflict = site.platform.adjudicate(DEMO_STUDY).conflicts.filter(
        pl.col("conflict_id") == UNMATCHED_S09
    )
    page = client.get(f"/conflicts/{UNMATCHED_S09}").text
    assert 'name="maps_to"' in page and "NEW_TRACT" in page
    review = _review(
        client,
        csrf,
        UNMATCHED_S09,
        status="MAPPED",
        maps_to="T1",
        seen_fingerprint=conflict["fingerprint"][0],
    )
    assert review.status_code == 200 and "→ T1" in review.text


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"rationale": "   "}, "A rationale is required: say why you vote so"),
        ({"status": "MAYBE"}, "This conflict can only end as “Closed” or “Not closed” or"),
        ({"status": ""}, "Choose the final status: “Closed”"),
    ],
)
def test_a_decision_the_protocol_refuses_writes_only_its_refusal(
    site: Site, as_role: AsRole, form: dict, message: str
) -> None:
    client, csrf = as_role("committee")
    before = site.positions()
    response = _review(client, csrf, READER_DISAGREEMENT_S05, **form)
    assert response.status_code == 400
    assert message in response.text and 'data-testid="refusal"' in response.text
    only_access_added(site, before)
    last = access_rows(site)[-1]
    assert (last["action"], last["outcome"], last["conflict_id"], last["subject_id"]) == (
        "VOTE",
        "REFUSED",
        READER_DISAGREEMENT_S05,
        "S05",
    )
    assert message in last["detail"]
    assert "VOTE REFUSED" in client.get("/audit?subject=S05&kind=access").text


@pytest.mark.parametrize("step", ["decision", "decision/confirm"])
@pytest.mark.parametrize("role", ["monitor", "data_manager", "admin"])
def test_only_the_committee_decides(site: Site, as_role: AsRole, role: str, step: str) -> None:
    client, csrf = as_role(role)
    before = site.positions()
    response = client.post(f"/conflicts/{READER_DISAGREEMENT_S05}/{step}", data=decision_form(csrf))
    assert response.status_code == 403 and f"role {role} may not decide" in response.text
    only_access_added(site, before)
    assert access_rows(site)[-1]["role"] == role


@pytest.mark.parametrize("step", ["decision", "decision/confirm"])
@pytest.mark.parametrize("token", [None, "forged-token"])
def test_a_decision_without_the_csrf_token_is_refused(
    site: Site, as_role: AsRole, step: str, token: str | None
) -> None:
    client, _ = as_role("committee")
    before = site.positions()
    form = decision_form(token or "")
    if token is None:
        form.pop("csrf_token")
    response = client.post(f"/conflicts/{READER_DISAGREEMENT_S05}/{step}", data=form)
    assert response.status_code == 403 and "CSRF token" in response.text
    only_access_added(site, before)


def test_a_post_without_a_session_is_refused(site: Site) -> None:
    before = site.positions()
    response = site.client().post(
        f"/conflicts/{READER_DISAGREEMENT_S05}/decision", data=decision_form("x")
    )
    assert response.status_code == 401
    only_access_added(site, before)
    assert access_rows(site)[-1]["who"] == "anonymous"


@pytest.mark.parametrize("step", ["decision", "decision/confirm"])
def test_deciding_an_unknown_conflict_is_refused(site: Site, as_role: AsRole, step: str) -> None:
    client, csrf = as_role("committee")
    before = site.positions()
    response = client.post("/conflicts/C-000000000000/" + step, data=decision_form(csrf))
    assert response.status_code == 404 and "no conflict C-000000000000" in response.text
    only_access_added(site, before)


def test_confirming_after_the_evidence_changed_is_refused(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("committee")
    before = site.positions()
    form = decision_form(csrf, seen_fingerprint="an-older-fingerprint")
    response = client.post(f"/conflicts/{READER_DISAGREEMENT_S05}/decision/confirm", data=form)
    assert response.status_code == 409 and "the evidence changed" in response.text
    only_access_added(site, before)


def test_confirming_after_someone_else_decided_is_refused(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("committee")
    fingerprint = site.platform.find_conflict(READER_DISAGREEMENT_S05, DEMO_STUDY)[1]["fingerprint"]
    site.decide(READER_DISAGREEMENT_S05, "NOT_CLOSED", "decided at the meeting")
    form = decision_form(csrf, seen_fingerprint=fingerprint)
    response = client.post(f"/conflicts/{READER_DISAGREEMENT_S05}/decision/confirm", data=form)
    assert response.status_code == 409 and "came into force since you reviewed" in response.text


def test_a_later_decision_supersedes_and_history_keeps_both(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("committee")
    for status in ("NOT_CLOSED", "CLOSED"):
        row = site.platform.find_conflict(READER_DISAGREEMENT_S05, DEMO_STUDY)[1]
        form = decision_form(
            csrf,
            status=status,
            seen_fingerprint=row["fingerprint"],
            seen_decision=row["decision_id"] or "",
        )
        response = client.post(  # dr.adams signs on the web, dr.baker concurs
            f"/conflicts/{READER_DISAGREEMENT_S05}/decision/confirm",
            data=form,
            follow_redirects=False,
        )
        assert response.status_code == 303
        site.vote(READER_DISAGREEMENT_S05, "dr.baker", status, "concur")
    page = client.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text
    history = page.split('data-testid="history"')[1].split("</table>")[0]
    assert history.count("<tr>") == 3  # head + two decisions
    assert "in force" in history and "superseded" in history and "supersedes D-" in history


def test_a_reopened_conflict_says_why(site: Site, as_role: AsRole, tmp_path) -> None:
    site.decide(READER_DISAGREEMENT_S05, "CLOSED", "consensus")
    # The imaging core lab corrects R2's final read (still not healed): new inputs, same conflict.
    reads = site.platform.records("mri_read", DEMO_STUDY).collect()
    r2 = reads.filter(pl.col("read_id") == "RD-S05-T2-FINAL-R2").row(0, named=True)
    correction = {k: v for k, v in r2.items() if k not in ("offset", "event_id")} | {
        "read_version": 2,
        "change_reason": "re-read after image upload",
        "fibrotic": True,
    }
    correction["scan_date"] = correction["scan_date"].isoformat()
    correction["read_at"] = "2025-01-10T10:00:00Z"
    path = tmp_path / "mri_reads.jsonl"
    import json

    path.write_text(json.dumps(correction) + "\n")
    outcome = site.platform.ingest(DEMO_STUDY, [path])
    assert outcome.reports[0].accepted == 1, outcome
    client, _ = as_role("committee")
    page = client.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text
    assert 'data-testid="reopened"' in page and "the inputs changed after decision" in page
    assert 'data-testid="conflict-status">Open' in page
    assert "re-read after image upload" in page  # the correction and its reason
    assert "on earlier evidence" in page


# -- lock ---------------------------------------------------------------------------------------
def _lock(client: TestClient, csrf: str, lock_id: str = "WEB-LOCK"):
    return client.post(
        "/lock",
        data={
            "csrf_token": csrf,
            "study": DEMO_STUDY,
            "lock_id": lock_id,
            "reason": "primary analysis",
            "level": "soft",
        },
        follow_redirects=False,
    )


@pytest.mark.parametrize("role", ["committee", "monitor"])
def test_only_data_managers_and_admins_lock(site: Site, as_role: AsRole, role: str) -> None:
    client, csrf = as_role(role)
    before = site.positions()
    response = _lock(client, csrf)
    assert response.status_code == 403 and f"role {role} may not lock" in response.text
    only_access_added(site, before)


def test_a_lock_without_csrf_is_refused(site: Site, as_role: AsRole) -> None:
    client, _ = as_role("data_manager")
    before = site.positions()
    assert _lock(client, "").status_code == 403
    only_access_added(site, before)


def test_a_lock_with_open_conflicts_is_refused_and_says_why(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("data_manager")
    before = site.positions()
    response = _lock(client, csrf)
    assert response.status_code == 409 and "7 conflict(s) are open" in response.text
    # each blocking conflict is a link to its page, in the reviewer's words
    assert f'href="/conflicts/{READER_DISAGREEMENT_S05}?study={DEMO_STUDY}"' in response.text
    assert "MRI readers disagree: S05/T2" in response.text
    assert "tract conflicts" not in response.text  # no CLI advice to a web user
    assert "Confirm and lock" not in response.text
    only_access_added(site, before)
    assert not site.platform.store.exists(f"locks/{DEMO_STUDY}/WEB-LOCK/manifest.json")


@pytest.mark.decided
def test_a_data_manager_sees_ready_to_lock_and_locks(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("data_manager")
    page = client.get("/").text
    # no open conflict, but the demo's 10 rejected rows are site queries: not "ready"
    assert "Not ready to lock: 14 site queries not closed" in page
    assert "10 of them rejected rows" in page and "Review the lock of DEMO" in page
    assert "Completers (n = 20)" in page and "30 / 43" in page
    review = _lock(client, csrf)
    assert review.status_code == 200 and "Confirm and lock DEMO" in review.text
    assert site.platform.records("lock", DEMO_STUDY).collect().is_empty()  # nothing yet
    fields = hidden_fields(review.text) | {"password": PASSWORD}
    refused = client.post("/lock/confirm", data=fields, follow_redirects=False)
    assert refused.status_code == 409 and "give the reason for locking with them" in refused.text
    response = client.post(
        "/lock/confirm",
        data=fields | {"queries_reason": "sites answer after the interim; no outcome uses them"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    page = client.get(response.headers["location"]).text
    assert 'data-testid="locked"' in page and "Locked as WEB-LOCK" in page
    from services.lock.snapshot import manifest_bytes

    manifest = json.loads(manifest_bytes(site.platform.store, DEMO_STUDY, "WEB-LOCK"))
    assert manifest["open_queries"]["not_closed"] == 14
    assert manifest["open_queries"]["reason"].startswith("sites answer after")
    page = client.get("/").text
    assert "Lock in force: " in page and "WEB-LOCK" in page
    assert 'data-testid="locks"' in page and "dm.jones" in page
    assert 'data-testid="lock-form"' not in page and 'data-testid="lock-closed"' in page


def _reviewed_lock(site: Site, client: TestClient, csrf: str) -> dict[str, str]:
    """The confirmation page's form of DEMO, decided (the test is marked ``decided``), its
    queries' reason given."""
    review = _lock(client, csrf)
    assert review.status_code == 200, review.text
    return hidden_fields(review.text) | {"queries_reason": "sites answer after the interim"}


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "signature refused: dm.jones must enter their password to sign a database lock"),
        ("wrong horse", "signature refused: unknown user or wrong password"),
    ],
)
@pytest.mark.decided
def test_a_web_lock_without_its_password_is_refused_and_locks_nothing(
    site: Site, as_role: AsRole, password: str, message: str
) -> None:
    """The lock is signed on the page as at the terminal (11.200): no password, or a wrong one,
    claims and writes nothing but the refusal, and the form comes back to sign again."""
    client, csrf = as_role("data_manager")
    fields = _reviewed_lock(site, client, csrf)
    before = site.positions()
    refused = client.post(
        "/lock/confirm", data=fields | {"password": password}, follow_redirects=False
    )
    assert refused.status_code == 403 and message in refused.text
    assert 'data-testid="refusal"' in refused.text and 'name="password"' in refused.text
    assert ">sites answer after the interim</textarea>" in refused.text  # the form is kept
    assert hidden_fields(refused.text)["reason"] == "primary analysis"
    only_access_added(site, before)
    study_access = site.platform.records("access", DEMO_STUDY).collect().sort("offset")
    last = study_access.row(-1, named=True)  # filed with the study it was for
    assert not password or password not in refused.text + last["detail"]  # never echoed
    assert (last["action"], last["outcome"], last["who"]) == ("LOCK", "REFUSED", "dm.jones")
    assert message in last["detail"]
    assert not site.platform.store.exists(f"locks/{DEMO_STUDY}/WEB-LOCK/manifest.json")
    assert site.platform.records("lock", DEMO_STUDY).collect().is_empty()  # not even claimed


@pytest.mark.decided
def test_failed_lock_signatures_count_in_the_sign_in_throttle(
    site_factory: Callable[..., Site],
) -> None:
    """Signing cannot be used to guess passwords: two wrong ones lock the account out, and the
    right one then signs nothing."""
    site = site_factory(max_failed_sign_ins=2)
    client = site.client()
    csrf = sign_in(client, "dm.jones")
    fields = _reviewed_lock(site, client, csrf)
    for _ in range(2):
        assert client.post("/lock/confirm", data=fields | {"password": "guess"}).status_code == 403
    refused = client.post("/lock/confirm", data=fields | {"password": PASSWORD})
    assert refused.status_code == 403 and "locked out" in refused.text
    assert site.platform.records("lock", DEMO_STUDY).collect().is_empty()


@pytest.mark.decided
def test_a_web_lock_is_signed_in_its_manifest_as_the_cli_signs(site: Site, as_role: AsRole) -> None:
    """The same act, the same signature: printed name, time, meaning, in the manifest whose
    sha256 the lock event records, shown by `tract snapshot open` with the lock's data."""
    from click.testing import CliRunner

    from services.cli import cli
    from services.lock.snapshot import manifest_bytes

    client, csrf = as_role("data_manager")
    fields = _reviewed_lock(site, client, csrf)
    meaning = f"locked {DEMO_STUDY} WEB-LOCK (soft lock): primary analysis"
    review = _lock(client, csrf).text  # what the signature will mean, before signing
    assert f'data-testid="meaning">{meaning}<' in review
    assert 'data-testid="signer">Dana Jones (dm.jones)<' in review
    done = client.post(
        "/lock/confirm", data=fields | {"password": PASSWORD}, follow_redirects=False
    )
    assert done.status_code == 303, done.text
    raw = manifest_bytes(site.platform.store, DEMO_STUDY, "WEB-LOCK")
    manifest = json.loads(raw)
    signature = manifest["signature"]
    assert manifest["requested_by"] == signature["signer"] == "dm.jones"
    assert (signature["printed_name"], signature["role"]) == ("Dana Jones", "data_manager")
    assert (signature["meaning"], signature["signed_via"]) == (meaning, "web")
    assert signature["authentication"].startswith("password re-entered (web session ")
    assert PASSWORD not in raw.decode()
    assert signature["signed_at"] <= manifest["locked_at"]
    event = site.platform.lock_event(DEMO_STUDY, "WEB-LOCK")
    assert event is not None and event["manifest_sha256"] == hashlib.sha256(raw).hexdigest()
    shown = CliRunner().invoke(
        cli, ["--home", str(site.home), "snapshot", "open", "--study", DEMO_STUDY, "--lock",
              "WEB-LOCK"],
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "by dm.jones (soft): primary analysis" in shown.output
    assert "signed: Dana Jones (dm.jones), " in shown.output and meaning in shown.output
    page = client.get(done.headers["location"]).text  # the lock's page shows it too
    assert 'data-testid="lock-signature">Dana Jones (dm.jones), ' in page and meaning in page


@pytest.mark.decided
def test_the_lock_page_shows_locks_signed_for_airflow_and_where_they_stand(
    site: Site, as_role: AsRole, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock signed with `tract lock --for-airflow` waits for the DAG: the lock page shows
    it (signature, reason, state), expired once its time is past, and taken once its lock is
    published."""
    from datetime import timedelta

    from services.lock import lock as locking
    from services.signatures import LOCK, Credentials, sign_as

    lock = (DEMO_STUDY, "AIRFLOW", "primary analysis", "dm.jones", "hard")
    queries = {"open_queries_reason": "sites answer later"}
    signer = Credentials("dm.jones", PASSWORD, "cli", "test")
    asked = site.platform.sign_lock_request(
        *lock, **queries, sign=sign_as(site.users, signer, LOCK)
    )
    client, _ = as_role("monitor")  # everyone who reads the lock history sees them
    page = client.get(f"/locks?study={DEMO_STUDY}").text
    row = page[page.index(f'data-request="{asked["request_id"]}"') :].split("</tr>")[0]
    assert "AIRFLOW" in row and "hard" in row and "primary analysis" in row
    assert "Dana Jones (dm.jones), " in row and "waiting for database_lock" in row
    assert "within 24 hours of signing" in page
    monkeypatch.setattr(locking, "REQUEST_VALID_FOR", timedelta(0))  # its time is past
    page = client.get(f"/locks?study={DEMO_STUDY}").text
    row = page[page.index(f'data-request="{asked["request_id"]}"') :].split("</tr>")[0]
    assert f">{locking.EXPIRED}<" in row
    monkeypatch.undo()

    site.platform.lock(*lock, **queries)  # as the DAG takes it: the same request (its id)
    page = client.get(f"/locks?study={DEMO_STUDY}").text
    row = page[page.index(f'data-request="{asked["request_id"]}"') :].split("</tr>")[0]
    assert ">taken<" in row


@pytest.mark.decided
def test_a_data_manager_signs_a_lock_for_airflow_on_the_page(site: Site, as_role: AsRole) -> None:
    """The page signed and took a lock at once; where Airflow takes locks the data manager had
    to sign at a terminal (`tract lock --for-airflow`). The confirmation page now signs the
    same lock for the DAG instead: nothing is locked, and the page says what to trigger."""
    from services.lock import lock as locking

    client, csrf = as_role("data_manager")
    fields = _reviewed_lock(site, client, csrf)
    review = _lock(client, csrf).text
    assert 'data-testid="sign-for-airflow"' in review and "within 24 hours" in review
    wrong = client.post("/lock/confirm", data=fields | {"password": "guess", "for_airflow": "1"})
    assert wrong.status_code == 403 and "signature refused" in wrong.text
    assert site.platform.records("lock_request", DEMO_STUDY).collect().is_empty()

    done = client.post(
        "/lock/confirm",
        data=fields | {"password": PASSWORD, "for_airflow": "1"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    [asked] = site.platform.records("lock_request", DEMO_STUDY).collect().to_dicts()
    assert done.headers["location"] == (
        f"/locks?study={DEMO_STUDY}&signed={asked['request_id']}#asked-h"
    )
    meaning = f"locked {DEMO_STUDY} WEB-LOCK (soft lock): primary analysis"
    assert (asked["signer"], asked["meaning"], asked["signed_via"]) == ("dm.jones", meaning, "web")
    assert asked["open_queries_reason"] == "sites answer after the interim"
    assert site.platform.records("lock", DEMO_STUDY).collect().is_empty()  # nothing locked
    assert not site.platform.store.exists(f"locks/{DEMO_STUDY}/WEB-LOCK/manifest.json")

    page = client.get(done.headers["location"]).text
    notice = page[page.index('data-testid="signed-for-airflow"') :].split("</div>")[0]
    by = locking.take_by(asked["signed_at"])
    assert f"Lock request {asked['request_id']} signed; nothing is locked yet." in notice
    assert "Signed in to Airflow as dm.jones, trigger <code>database_lock</code>" in notice
    assert f"by {by:%Y-%m-%d %H:%M} UTC" in notice
    row = page[page.index(f'data-request="{asked["request_id"]}"') :].split("</tr>")[0]
    assert "Dana Jones (dm.jones), " in row and "waiting for database_lock" in row

    site.platform.lock(  # as the DAG takes it: the request signed on the page
        DEMO_STUDY,
        "WEB-LOCK",
        "primary analysis",
        "dm.jones",
        "soft",
        open_queries_reason="sites answer after the interim",
    )
    page = client.get(f"/locks?study={DEMO_STUDY}").text
    row = page[page.index(f'data-request="{asked["request_id"]}"') :].split("</tr>")[0]
    assert ">taken<" in row


@pytest.mark.parametrize("role", ["committee", "monitor"])
@pytest.mark.decided
def test_only_a_data_manager_signs_a_lock_for_airflow(
    site: Site, as_role: AsRole, role: str
) -> None:
    """Insider: another role posts the confirmation form, for Airflow, with their own
    password: refused like the lock itself, and no request is recorded for the DAG."""
    manager, csrf = as_role("data_manager")
    fields = _reviewed_lock(site, manager, csrf)
    other, other_csrf = as_role(role)
    refused = other.post(
        "/lock/confirm",
        data=fields | {"csrf_token": other_csrf, "password": PASSWORD, "for_airflow": "1"},
        follow_redirects=False,
    )
    assert refused.status_code == 403, refused.text
    assert site.platform.records("lock_request", DEMO_STUDY).collect().is_empty()


# -- unlock by signatures (issue 9, item 2) ------------------------------------------------------
def _locked(site: Site) -> None:
    """DEMO, decided (the test is marked ``decided``), locked hard."""
    site.platform.lock(
        DEMO_STUDY,
        "WEB-LOCK",
        "primary analysis",
        "dm.jones",
        "hard",
        open_queries_reason="sites answer later",
    )


@pytest.mark.decided
def test_an_unlock_needs_a_signed_request_and_two_other_signed_approvals(
    site: Site, as_role: AsRole
) -> None:
    _locked(site)
    manager, csrf = as_role("data_manager")
    page = manager.get("/").text
    assert 'data-testid="unlock-request-form"' in page and "Sign unlock request" in page
    form = {"csrf_token": csrf, "study": DEMO_STUDY, "lock_id": "WEB-LOCK", "reason": "late reads"}
    before = site.positions()
    refused = manager.post("/unlock/request", data=form | {"password": "wrong"})
    assert refused.status_code == 403 and "signature refused" in refused.text
    only_access_added(site, before)
    done = manager.post(
        "/unlock/request", data=form | {"password": PASSWORD}, follow_redirects=False
    )
    assert done.status_code == 303
    page = manager.get(done.headers["location"]).text
    assert 'data-testid="unlock-signed"' in page and "0 of 2 approvals" in page
    assert "requested: Dana Jones (dm.jones)" in page
    [asked] = site.platform.unlock_requests(DEMO_STUDY)

    def approve(client: TestClient, token: str, password: str = PASSWORD):
        data = {"csrf_token": token, "study": DEMO_STUDY, "request_id": asked.request_id}
        return client.post("/unlock/approve", data=data | {"password": password})

    # the requester and the committee cannot approve; nobody approves for anyone else
    assert "Sign approval" not in page  # not offered to the requester
    assert approve(manager, csrf).status_code == 403
    committee, committee_csrf = as_role("committee")
    response = approve(committee, committee_csrf)
    assert response.status_code == 403 and "role committee may not approve_unlock" in response.text
    approver, approver_csrf = as_role("approver")
    assert "Sign approval" in approver.get("/").text
    assert approve(approver, approver_csrf, "not my password").status_code == 403
    assert approve(approver, approver_csrf).status_code == 200  # redirected to the dashboard
    assert site.platform.lock_state(DEMO_STUDY, "WEB-LOCK") == "LOCK"  # one of two
    response = approve(approver, approver_csrf)
    assert response.status_code == 403 and "already approved" in response.text
    admin, admin_csrf = as_role("admin")
    page = approve(admin, admin_csrf).text
    assert site.platform.lock_state(DEMO_STUDY, "WEB-LOCK") == "UNLOCK"
    assert "approved: Quinn Ng (qa.ng)" in page and "approved: Ada Admin (root.admin)" in page
    assert "UNLOCKED" in page


# -- audit trail --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "check"),
    [
        ("subject=S05", lambda r: r["subject_id"] == "S05"),
        ("user=crc.okafor", lambda r: "crc.okafor" in r["who"]),
        ("kind=access", lambda r: r["kind"] == "access"),
        ("since=2024-11-01&until=2024-11-30", lambda r: r["at"][:7] == "2024-11"),
    ],
)
def test_the_audit_trail_filters_and_exports_what_it_shows(
    as_role: AsRole, query: str, check: Callable[[dict], bool]
) -> None:
    client, _ = as_role("monitor")
    page = client.get(f"/audit?{query}")
    assert page.status_code == 200 and "rows match" in page.text
    export = client.get(f"/audit.csv?{query}")
    assert export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert rows and all(check(r) for r in rows)
    assert list(rows[0]) == [
        "at", "kind", "action", "who", "subject_id", "tract_id",
        "what", "why", "old_value", "new_value", "event_id", "offset",
    ]  # fmt: skip


def test_every_sign_in_decision_and_refusal_is_in_the_trail(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("committee")
    _review(client, csrf, READER_DISAGREEMENT_S05, rationale="")
    monitor, monitor_csrf = as_role("monitor")
    monitor.post(f"/conflicts/{READER_DISAGREEMENT_S05}/decision", data=decision_form(monitor_csrf))
    site.decide(READER_DISAGREEMENT_S05, "CLOSED", "consensus", "dr.adams", "dr.baker")
    trail = list(csv.DictReader(io.StringIO(monitor.get("/audit.csv?kind=access").text)))
    actions = [(r["action"], r["who"]) for r in trail]
    assert ("SIGN_IN ALLOWED", "dr.adams (committee)") in actions
    assert ("SIGN_IN ALLOWED", "mon.lee (monitor)") in actions
    assert ("VOTE REFUSED", "dr.adams (committee)") in actions
    assert ("VOTE REFUSED", "mon.lee (monitor)") in actions
    decisions = monitor.get("/audit?kind=committee_decision").text
    assert "signed by dr.adams, dr.baker" in decisions
    votes = monitor.get("/audit?kind=committee_vote").text
    assert "Dr Anna Adams (dr.adams)" in votes and "Dr Ben Baker (dr.baker)" in votes
    exports = [r for r in site.platform.records("access", DEMO_STUDY).collect().to_dicts()]
    assert any(r["action"] == "EXPORT" and r["who"] == "mon.lee" for r in exports)


def test_the_audit_refuses_a_date_it_cannot_read(as_role: AsRole) -> None:
    client, _ = as_role("monitor")
    response = client.get("/audit?since=yesterday")
    assert response.status_code == 400 and "since must be a date" in response.text


def test_exported_cells_cannot_run_as_spreadsheet_formulas(site: Site, as_role: AsRole) -> None:
    site.decide(READER_DISAGREEMENT_S05, "CLOSED", '=HYPERLINK("http://evil.example")')
    client, _ = as_role("monitor")
    for kind in ("committee_decision", "committee_vote"):
        rows = list(csv.DictReader(io.StringIO(client.get(f"/audit.csv?kind={kind}").text)))
        assert rows and all(r["why"].startswith("'=HYPERLINK") for r in rows)


# -- edges --------------------------------------------------------------------------------------
def _ingest_read(site: Site, tmp_path, **fields: object) -> None:
    """One MRI read (a copy of S05/T2's final R1 read with ``fields`` changed) through ingest."""
    import json

    reads = site.platform.records("mri_read", DEMO_STUDY).collect()
    base = reads.filter(pl.col("read_id") == "RD-S05-T2-FINAL-R1").row(0, named=True)
    read = {k: v for k, v in base.items() if k not in ("offset", "event_id")} | fields
    read["scan_date"] = read["scan_date"].isoformat()
    path = tmp_path / "mri_reads.jsonl"
    path.write_text(json.dumps(read, default=str) + "\n")
    assert site.platform.ingest(DEMO_STUDY, [path]).reports[0].accepted == 1


def test_a_resolved_conflict_offers_nothing_to_decide(
    site: Site, as_role: AsRole, tmp_path
) -> None:
    _ingest_read(
        site,
        tmp_path,
        read_id="RD-S05-T2-FINAL-ADJ",
        reader_id="RAD-C",
        reader_role="ADJ",
        read_at="2025-01-05T10:00:00Z",
    )
    client, csrf = as_role("committee")
    page = client.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text
    assert 'data-testid="conflict-status">Resolved by data' in page
    assert "there is nothing to decide" in page and "Review your vote" not in page
    assert '<th scope="col">Reader 1</th>' in page
    before = site.positions()
    response = _review(client, csrf, READER_DISAGREEMENT_S05)
    assert response.status_code == 400 and "no longer holds" in response.text
    only_access_added(site, before)


def test_text_from_the_data_is_escaped(site: Site, as_role: AsRole) -> None:
    site.decide(READER_DISAGREEMENT_S05, "CLOSED", "<script>alert('x')</script>")
    client, _ = as_role("monitor")
    page = client.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_several_studies_are_listed_and_filtered(site: Site, as_role: AsRole) -> None:
    from services.demo.trial import write_demo_trial

    files = write_demo_trial(site.home / "second-files")
    site.platform.ingest("SECOND", list(files.values()))
    client, _ = as_role("committee")
    page = client.get("/conflicts").text
    assert page.count("data-conflict=") == 14 and '<th scope="col">Study</th>' in page
    assert client.get("/conflicts?study=SECOND").text.count("data-conflict=") == 7
    assert "Study SECOND" in client.get("/?study=SECOND").text
    assert 'option value="SECOND"' in client.get("/").text
    assert "study SECOND" in client.get("/audit?study=SECOND").text


def test_an_empty_platform_says_what_to_do(tmp_path, site: Site) -> None:
    from services.accounts import account_events
    from services.platform import Platform
    from services.web.app import create_app
    from services.web.settings import WebSettings

    empty = Platform.embedded(tmp_path / "empty")
    empty.record(account_events(site.users, ["dr.adams"], "ADD", "cli:test"))
    app = create_app(empty, WebSettings.from_env(tmp_path / "empty", environ={}), site.users)
    client = TestClient(app)
    sign_in(client, "dr.adams")
    assert "No study yet" in client.get("/").text
    assert "No open conflicts." in client.get("/conflicts").text
    assert "No study yet" in client.get("/audit").text
    assert client.get("/audit.csv").text == ""


def test_the_confirm_step_checks_the_protocol_again(site: Site, as_role: AsRole) -> None:
    client, csrf = as_role("committee")
    shown = hidden_fields(client.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text)
    form = decision_form(csrf, status="NEW_TRACT", seen_fingerprint=shown["seen_fingerprint"])
    before = site.positions()
    response = client.post(f"/conflicts/{READER_DISAGREEMENT_S05}/decision/confirm", data=form)
    assert response.status_code == 400 and "status must be one of" in response.text
    only_access_added(site, before)
