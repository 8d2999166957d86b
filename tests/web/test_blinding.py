"""Blinding by construction (issue 9, item 6), replayed over HTTP as a committee member.

The committee must see no injection values (dates, volumes, when they were entered), no reader
identity (in fields, in rejected rows, in free text, in any spelling), and no study-level
efficacy figure unless the trial's charter allows it (TRACT_WEB_COMMITTEE_SEES_RESULTS=1).
Every page and export a committee member can reach is crawled, so a new page that forgets
the policy fails here.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from services.demo.run import decide_demo_conflicts, demo_committee
from services.demo.trial import DEMO_STUDY
from tests.web.conftest import READER_DISAGREEMENT_S05, Site, fast_hasher, sign_in

# Values planted in the data below: none may reach a committee member.
SECRET_DATE = "2031-07-19"  # an injection's administered_on (no other record has this date)
SECRET_VOLUME = "4.375"  # an injection's volume_ml
SECRET_ENTERED = "2031-08-02"  # an injection's entered_at date
NEW_READER = "RAD-QX"  # a reader known only from a rejected read
SPELLINGS = ("rad-a", "RAD_A", "Rad A", "RADA", "r.a.d.-a", "RAD-B", "RAD-C", NEW_READER)
READER_ID = re.compile(r"(?i)(?<![a-z0-9])r[\W_]*a[\W_]*d[\W_]*(?:[abc]|q[\W_]*x)(?![a-z0-9])")

INJECTIONS = (
    "record_id,record_version,subject_id,tract_id,visit,administered_on,volume_ml,entered_at,"
    "entered_by,change_reason,deleted\n"
    # rejected on a visible field: the row's hidden fields must still not show
    f"INJ-BAD-VISIT,1,S05,T2,INJ9,{SECRET_DATE},{SECRET_VOLUME},{SECRET_ENTERED}T09:00:00Z,"
    "crc.okafor,,N\n"
    # rejected on a hidden field: the reason quotes the value, so it is withheld
    f"INJ-BAD-VOLUME,1,S05,T2,INJ2,{SECRET_DATE},-{SECRET_VOLUME},{SECRET_ENTERED}T09:00:00Z,"
    "crc.okafor,,N\n"
    # accepted: its date, volume and entry time are hidden in the audit trail
    f"INJ-S05-T2-EXTRA,1,S05,T2,INJ3,{SECRET_DATE},{SECRET_VOLUME},{SECRET_ENTERED}T10:00:00Z,"
    "crc.okafor,,N\n"
)


def _exam_correction(site: Site) -> str:
    """S05/T2's FU6 exam corrected, the reason naming readers in several spellings."""
    exams = site.platform.records("clinical_exam", DEMO_STUDY).collect()
    row = exams.filter(pl.col("record_id") == "EX-S05-T2-FU6").row(0, named=True)
    header = [c for c in row if c not in ("offset", "event_id")]
    values = row | {
        "record_version": 2,
        "change_reason": "per rad-a and RAD_A (Rad A, RADA, r.a.d.-a): re-examined",
        "drains_on_compression": "Y" if row["drains_on_compression"] else "N",
        "deleted": "N",
        "entered_at": "2025-02-01T10:00:00Z",
    }
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([header, ["" if values[c] is None else values[c] for c in header]])
    return out.getvalue()


def _reads(site: Site) -> str:
    """An MRI correction quoting a reader; a rejected read by a reader seen nowhere else."""
    reads = site.platform.records("mri_read", DEMO_STUDY).collect()
    base = reads.filter(pl.col("read_id") == "RD-S05-T2-FINAL-R2").row(0, named=True)
    read = {k: v for k, v in base.items() if k not in ("offset", "event_id")}
    read |= {"scan_date": read["scan_date"].isoformat(), "read_at": "2025-01-11T10:00:00Z"}
    corrected = read | {"read_version": 2, "change_reason": "re-read after RAD-B's query"}
    rejected = read | {
        "read_id": "RD-BAD-QX",
        "reader_id": NEW_READER,
        "reader_role": "R7",
        "change_reason": f"{NEW_READER.lower()} read it",
    }
    return "\n".join(json.dumps(r, default=str) for r in (corrected, rejected)) + "\n"


@pytest.fixture
def planted(site_factory: Callable[..., Site], tmp_path: Path) -> Callable[..., Site]:
    """A site whose data carry every leak of item 6."""

    def make(**settings: object) -> Site:
        site = site_factory(**settings)
        files = {
            "injections.csv": INJECTIONS,
            "clinical_exams.csv": _exam_correction(site),
            "mri_reads.jsonl": _reads(site),
        }
        folder = tmp_path / f"planted-{id(site)}"
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
        outcome = site.platform.ingest(DEMO_STUDY, [folder / n for n in files])
        assert not outcome.refused, outcome.refused
        return site

    return make


def committee(site: Site) -> TestClient:
    client = site.client()
    sign_in(client, "dr.adams")
    return client


def leaks(text: str) -> list[str]:
    found = [s for s in (SECRET_DATE, SECRET_VOLUME, SECRET_ENTERED) if s in text]
    return found + READER_ID.findall(text)


def test_rejected_injection_rows_show_no_date_or_volume(planted: Callable[..., Site]) -> None:
    client = committee(planted())
    export = client.get("/audit.csv?kind=rejected_row").text
    assert "INJ-BAD-VISIT" in export and "INJ-BAD-VOLUME" in export  # the rows are there
    assert leaks(export) == [] and "[withheld]" in export
    assert leaks(client.get("/audit?kind=rejected_row").text) == []


def test_injection_entry_times_and_values_are_hidden(planted: Callable[..., Site]) -> None:
    client = committee(planted())
    rows = list(csv.DictReader(io.StringIO(client.get("/audit.csv?kind=injection").text)))
    assert rows and all(r["at"] == "" for r in rows)  # at = entered_at for injections
    assert leaks(client.get("/audit?kind=injection").text) == []


def test_rejected_reads_hide_their_reader_even_an_unknown_one(
    planted: Callable[..., Site],
) -> None:
    client = committee(planted())
    export = client.get("/audit.csv?kind=rejected_row").text
    assert "RD-BAD-QX" in export and leaks(export) == []


def test_free_text_is_scrubbed_of_every_spelling_of_a_reader(
    planted: Callable[..., Site],
) -> None:
    client = committee(planted())
    page = client.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text
    assert "re-examined" in page and "re-read after" in page  # the reasons are shown...
    assert leaks(page) == []  # ...without the readers in them
    assert "[blinded reader]" in page
    audit = client.get("/audit.csv?subject=S05").text
    assert "re-examined" in audit and leaks(audit) == []


def test_other_roles_still_see_what_the_committee_may_not(planted: Callable[..., Site]) -> None:
    site = planted()
    monitor = site.client()
    sign_in(monitor, "mon.lee")
    export = monitor.get("/audit.csv").text
    for value in (SECRET_DATE, SECRET_VOLUME, NEW_READER, "per rad-a and RAD_A"):
        assert value in export
    assert "Reader 1 (RAD-A)" in monitor.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text


EFFICACY = (
    "Completers (n = 20)",
    "Clopper-Pearson",
    "Intention to treat",
    "treated tracts closed",
    "Discharge improved",
    "Sensitivity definitions",
    "ADMIRE_COMBINED",
    "RESPONSE_50",
    "Tract status over visits",
    'data-testid="patients"',
    "INJ1 vs INJ3 p",
)


def test_the_committee_does_not_see_efficacy_figures(site_factory: Callable[..., Site]) -> None:
    site = site_factory()
    page = committee(site).get("/").text
    assert [figure for figure in EFFICACY if figure in page] == []
    assert 'data-testid="results-hidden"' in page
    assert "Not ready to lock: 7 open conflict(s)" in page  # its own work stays visible
    assert 'data-testid="kappa"' in page  # reader agreement is not an efficacy figure


def test_a_charter_may_let_the_committee_see_results(site_factory: Callable[..., Site]) -> None:
    site = site_factory(environ={"TRACT_WEB_COMMITTEE_SEES_RESULTS": "1"})
    page = committee(site).get("/").text
    assert [figure for figure in EFFICACY if figure not in page] == []


def test_data_managers_always_see_the_results(site_factory: Callable[..., Site]) -> None:
    client = site_factory().client()
    sign_in(client, "dm.jones")
    page = client.get("/").text
    assert [figure for figure in EFFICACY if figure not in page] == []


LOCK = "PRIMARY"


def _reachable(site: Site) -> list[str]:
    """Every page and export a committee member can open, with each filter that changes what
    is read (the crawl list the route check below holds to every GET route)."""
    result = site.platform.adjudicate(DEMO_STUDY)
    conflicts = result.conflicts["conflict_id"].to_list()
    subjects = sorted(set(result.patients["subject_id"]) | set(result.conflicts["subject_id"]))
    kinds = ["", *(f"kind={k}" for k in ("rejected_row", "injection", "mri_read", "access"))]
    return [
        "/",
        f"/?study={DEMO_STUDY}",
        "/conflicts",
        "/conflicts?status=ALL",
        *(f"/conflicts/{c}" for c in conflicts),
        "/subjects",
        *(f"/subjects/{s}?study={DEMO_STUDY}" for s in subjects),
        "/queries?status=ALL",
        "/queries.csv?status=ALL",
        "/locks",
        f"/locks/{LOCK}?study={DEMO_STUDY}",
        *(f"/audit?{k}" for k in kinds),
        *(f"/audit.csv?{k}" for k in kinds),
        "/password",
    ]


REFUSED = [f"/locks/{LOCK}/download?study={DEMO_STUDY}"]
"""Pages the committee is refused: a lock's files hold every event unblinded."""


def _locked(site: Site) -> Site:
    """The planted site with the committee's decisions and a lock (so lock pages exist)."""
    decide_demo_conflicts(site.platform, demo_committee(site.platform, fast_hasher()))
    site.platform.lock(DEMO_STUDY, LOCK, "primary analysis", "dm.jones", open_queries_reason="x")
    return site


def test_nothing_a_committee_member_can_open_leaks(planted: Callable[..., Site]) -> None:
    site = _locked(planted())
    client = committee(site)
    for path in _reachable(site):
        response = client.get(path)
        assert response.status_code == 200, path
        assert leaks(response.text) == [], path
    for path in REFUSED:
        response = client.get(path)
        assert response.status_code == 403, path
        assert leaks(response.text) == [], path


def test_every_page_is_in_the_crawl(site: Site) -> None:
    """A new GET route must be added to the crawl above (and so to the blinding policy)."""
    patterns = [
        (r"C-[0-9a-f]{12}", "{conflict_id}"),
        (r"^/subjects/[^/]+$", "/subjects/{subject_id}"),
        (rf"^/locks/{LOCK}", "/locks/{lock_id}"),
    ]

    def shape(path: str) -> str:
        path = path.split("?")[0]
        for pattern, name in patterns:
            path = re.sub(pattern, name, path)
        return path

    crawled = {shape(p) for p in [*_reachable(site), *REFUSED]}
    routes = {
        route.path  # type: ignore[attr-defined]
        for route in site.app.routes
        if "GET" in getattr(route, "methods", set())
    }
    public = {"/login", "/healthz"}
    assert routes - public - crawled == set()
