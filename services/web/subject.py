"""One patient on one page (every tract, visit, read, report, decision and query), and the
subject listing a monitor works from.

Blinding: every frame is read through the :class:`VisiblePlatform`. Outcomes add up to the
study's efficacy figures, so a role without ``sees_results`` (the committee, by default) sees a
tract's outcome only on a subject with a conflict (what its conflict pages already show) and
never a patient's category.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

import schemas
from services.adjudicator.state import current
from services.web import evidence as ev
from services.web.errors import AccessRefusedError
from services.web.plots import swimmer_svg
from services.web.visibility import VisiblePlatform

PER_PAGE = 50
SUBJECT_STATUSES = ("ENROLLED", "COMPLETED", "WITHDRAWN")


@dataclass(frozen=True)
class TractRow:
    tract_id: str
    registered: bool
    parks_type: str | None
    clock: str
    treated: str
    draining_at_baseline: str
    outcome: str | None
    decided_by: str | None
    rule_outcome: str | None
    post_lock: bool
    changed_since_lock: bool
    locked_outcome: str | None
    note: str = ""


@dataclass(frozen=True)
class VisitCell:
    status: str
    date: str
    in_window: bool | None


@dataclass(frozen=True)
class TractEvidence:
    tract_id: str
    timeline: list[ev.VisitEvidence]
    mri: list[ev.MriComparison]
    pathology: ev.PathologyTrend | None


@dataclass(frozen=True)
class SubjectView:
    study: str
    subject_id: str
    record: dict[str, Any] | None
    site_id: str | None
    status: str | None
    category: str | None
    outcomes_shown: bool
    tracts: list[TractRow]
    visits: tuple[str, ...]
    grid: dict[str, dict[str, VisitCell]]
    evidence: list[TractEvidence]
    conflicts: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    queries: list[dict[str, Any]]
    plot_svg: str
    blinded: bool
    lock_id: str | None
    injections: int = 0
    notes: list[str] = field(default_factory=list)
    state_differs: tuple[str, ...] = ()
    """Tables whose kept files for this subject differ from the log (the page shows the log's)."""


def subject_view(
    platform: VisiblePlatform, study: str, subject: str, image_url: str | None = None
) -> SubjectView:
    """Everything about ``subject`` of ``study``; 404 for a subject the study never saw."""
    from services.web.views import image_linker

    records = platform.subject_records(
        study,
        subject,
        (
            "subject",
            "tract",
            "injection",
            "clinical_exam",
            "mri_read",
            "pathology_report",
            "committee_decision",
        ),
    )
    result, state_differs = platform.subject_outcomes(study, subject)
    mine = {
        name: getattr(result, name).filter(pl.col("subject_id") == subject)
        for name in ("tracts", "patients", "visits", "conflicts", "new_tracts")
    }
    if not any(f.height for f in records.values()) and not mine["conflicts"].height:
        raise AccessRefusedError(
            f"study {study} has no subject {subject!r}; find subjects at /subjects?study={study}",
            404,
        )
    live = current(records["subject"].lazy(), schemas.contract("subject")).collect()
    record = live.row(0, named=True) if live.height else None
    rules = platform.rules
    outcomes_shown = platform.policy.sees_results or mine["conflicts"].height > 0
    registry = {t.tract_id: t for t in ev.registry_tracts(records["tract"])}
    tracts = _tracts(mine["tracts"], registry, mine["new_tracts"], outcomes_shown)
    tract_ids = [t.tract_id for t in tracts]
    evidence_ids = sorted(
        {*tract_ids}
        | set(records["clinical_exam"]["tract_id"].to_list())
        | set(records["mri_read"]["tract_id"].to_list())
    )
    show_ids = not platform.policy.blinds_readers
    link = image_linker(image_url, study, show_ids)
    evidence = []
    for tract in evidence_ids:
        visits = mine["visits"].filter(pl.col("tract_id") == tract)
        evidence.append(
            TractEvidence(
                tract,
                ev.exam_timeline(
                    records["clinical_exam"].filter(pl.col("tract_id") == tract),
                    visits,
                    rules.visits,
                ),
                ev.mri_side_by_side(
                    records["mri_read"].filter(pl.col("tract_id") == tract),
                    rules,
                    show_ids,
                    ("MRI_BL", rules.final_mri),
                    link,
                ),
                ev.pathology_trend(records["pathology_report"].filter(pl.col("tract_id") == tract)),
            )
        )
    grid: dict[str, dict[str, VisitCell]] = {}
    for row in mine["visits"].iter_rows(named=True):
        grid.setdefault(row["tract_id"], {})[row["visit"]] = VisitCell(
            "INCONSISTENT" if row["inconsistent"] else (row["status"] or "INCONSISTENT"),
            ev.text(row["exam_date"]),
            row.get("in_window"),
        )
    for tract_evidence in evidence:  # a tract outside the registry: its exams, as recorded
        if tract_evidence.tract_id in grid:
            continue
        for visit in tract_evidence.timeline:
            live = [v for v in visit.versions if v.current]
            if live:
                grid.setdefault(tract_evidence.tract_id, {})[visit.visit] = VisitCell(
                    visit.status, live[0].exam_date, None
                )
    patients = mine["patients"]
    category = patients["category"][0] if patients.height and platform.policy.sees_results else None
    conflicts = mine["conflicts"].sort("status", "type", "tract_id").to_dicts()
    queries = platform.queries(study, subject=subject).to_dicts()
    decisions = records["committee_decision"].sort("decided_at", descending=True).to_dicts()
    lock_id = None
    if "lock_id" in mine["tracts"].columns and mine["tracts"].height:
        lock_id = mine["tracts"]["lock_id"][0]
    return SubjectView(
        study=study,
        subject_id=subject,
        record=record,
        site_id=record["site_id"] if record else None,
        status=record["status"] if record else None,
        category=category,
        outcomes_shown=outcomes_shown,
        tracts=tracts,
        visits=rules.visits,
        grid=grid,
        evidence=evidence,
        conflicts=conflicts,
        decisions=decisions,
        queries=queries,
        plot_svg=swimmer_svg(
            mine["visits"],
            mine["tracts"],
            rules.visits,
            title=f"{subject}: tract status over visits",
        )
        if outcomes_shown
        else "",
        blinded=not show_ids,
        lock_id=lock_id,
        state_differs=state_differs,
        injections=current(records["injection"].lazy(), schemas.contract("injection"))
        .collect()
        .height
        if records["injection"].height
        else 0,
    )


def _tracts(
    tracts: pl.DataFrame,
    registry: Mapping[str, ev.RegistryTract],
    new_tracts: pl.DataFrame,
    outcomes_shown: bool,
) -> list[TractRow]:
    rows = []
    for t in tracts.sort("tract_id").iter_rows(named=True):
        reg = registry.get(t["tract_id"])
        rows.append(
            TractRow(
                tract_id=t["tract_id"],
                registered=reg is not None,
                parks_type=t.get("parks_type"),
                clock=reg.clock if reg else ev.DASH,
                treated=ev.text(t["treated"]),
                draining_at_baseline=reg.draining_at_baseline if reg else ev.DASH,
                outcome=t["outcome"] if outcomes_shown and t["treated"] else None,
                decided_by=t["decided_by"] if outcomes_shown and t["treated"] else None,
                rule_outcome=t["rule_outcome"] if outcomes_shown and t["treated"] else None,
                post_lock=bool(t.get("post_lock")),
                changed_since_lock=bool(t.get("changed_since_lock")),
                locked_outcome=t.get("locked_outcome") if outcomes_shown else None,
            )
        )
    for t in new_tracts.iter_rows(named=True):
        rows.append(
            TractRow(
                tract_id=t["tract_id"],
                registered=False,
                parks_type=None,
                clock=ev.DASH,
                treated="no",
                draining_at_baseline=ev.DASH,
                outcome=None,
                decided_by=None,
                rule_outcome=None,
                post_lock=False,
                changed_since_lock=False,
                locked_outcome=None,
                note=f"new tract (committee decision {t['decision_id']}): reported, never in a "
                "denominator",
            )
        )
    return rows


# -- the listing ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubjectFilters:
    site: str | None = None
    status: str | None = None
    search: str | None = None
    page: int = 1

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> SubjectFilters:
        from services.web.queue import _clean, _int

        status = (_clean(query.get("status")) or "").upper() or None
        if status and status not in SUBJECT_STATUSES:
            raise AccessRefusedError(
                f"status must be one of {', '.join(SUBJECT_STATUSES)}; got {status!r}", 400
            )
        search = _clean(query.get("q"))
        return cls(
            site=_clean(query.get("site")),
            status=status,
            search=search and search.upper(),
            page=_int(query.get("page"), "page", 1),
        )


@dataclass(frozen=True)
class SubjectList:
    study: str
    studies: list[str]
    filters: SubjectFilters
    rows: list[dict[str, Any]]
    matching: int
    pages: int
    sites: list[str]
    results: bool


def subject_list(
    platform: VisiblePlatform, study: str, studies: list[str], f: SubjectFilters
) -> SubjectList:
    """Every subject of the study (registered or only seen in evidence) with site, status,
    tracts, open conflicts and queries not closed; categories only for roles that see results."""
    tracts, conflicts = platform.table(study, "tracts"), platform.conflicts(study)
    subjects = platform.records("subject", study).collect()
    live = (
        current(subjects.lazy(), schemas.contract("subject")).collect()
        if subjects.height
        else pl.DataFrame(schema={"subject_id": pl.String, "site_id": pl.String})
    )
    treated = tracts.group_by("subject_id").agg(
        tracts=pl.len(),
        treated=pl.col("treated").sum(),
        post_lock=pl.col("post_lock").fill_null(False).any(),
    )
    conflicts = conflicts.filter(pl.col("status") == "OPEN").group_by("subject_id").len("open")
    queries = (
        platform.queries(study)
        .filter(pl.col("status") != "CLOSED")
        .group_by("subject_id")
        .len("queries")
    )
    patients = platform.table(study, "patients").select("subject_id", "category", "subject_status")
    everyone = (
        pl.concat(
            [
                patients.select("subject_id"),
                live.select("subject_id"),
                conflicts.select("subject_id"),
            ]
        )
        .unique()
        .filter(pl.col("subject_id") != "")
    )
    rows = (
        everyone.join(
            live.select("subject_id", "site_id", "enrolled_on", status="status"),
            on="subject_id",
            how="left",
        )
        .join(patients, on="subject_id", how="left")
        .join(treated, on="subject_id", how="left")
        .join(conflicts, on="subject_id", how="left")
        .join(queries, on="subject_id", how="left")
        .with_columns(
            pl.col("open", "queries", "tracts", "treated").fill_null(0),
            registered=pl.col("site_id").is_not_null(),
        )
        .sort("site_id", "subject_id", nulls_last=True)
    )
    sites = sorted(s for s in rows["site_id"].unique().to_list() if s)
    if f.site:
        rows = rows.filter(pl.col("site_id") == f.site)
    if f.status:
        rows = rows.filter(pl.col("status") == f.status)
    if f.search:
        rows = rows.filter(
            pl.col("subject_id").str.to_uppercase().str.contains(f.search, literal=True)
        )
    pages = max(1, -(-rows.height // PER_PAGE))
    page = min(f.page, pages)
    results = platform.policy.sees_results
    shown = rows.slice((page - 1) * PER_PAGE, PER_PAGE)
    if not results:
        shown = shown.with_columns(category=pl.lit(None, pl.String))
    return SubjectList(
        study=study,
        studies=studies,
        filters=SubjectFilters(f.site, f.status, f.search, page),
        rows=shown.to_dicts(),
        matching=rows.height,
        pages=pages,
        sites=sites,
        results=results,
    )
