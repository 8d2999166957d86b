"""What each page shows, assembled from the platform's results as plain view objects.

The routes call these and hand the result to a template; nothing here knows about HTTP. The
queue's age and overdue flag, the audit filters and the readiness to lock are decided here,
where they can be tested with plain frames. What a role may see is not: every frame arrives
already blinded, read through a :class:`~services.web.visibility.VisiblePlatform`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote, urlencode

import polars as pl

from services.adjudicator.committee import tract_mappings
from services.adjudicator.votes import ballot
from services.audit import AUDIT_KINDS
from services.events import subject_is
from services.lock.unlock import UnlockRequest, summarise
from services.web import evidence as ev
from services.web.errors import AccessRefusedError
from services.web.plots import swimmer_svg
from services.web.queue import (  # noqa: F401  (the queue's names, where the pages look)
    QUEUE_STATUSES,
    ConflictSummary,
    QueueFilters,
    QueueView,
    conflict_queue,
    summarize,
)
from services.web.settings import image_link
from services.web.visibility import VisiblePlatform

AUDIT_LIMIT = 100
"""Audit rows per page (every page is reachable; the CSV has them all)."""


def _bad_request(message: str) -> AccessRefusedError:
    return AccessRefusedError(message, status_code=400)


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


# -- conflicts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConflictView:
    summary: ConflictSummary
    timeline: list[ev.VisitEvidence]
    mri: list[ev.MriComparison]
    pathology: ev.PathologyTrend | None
    conclusion: ev.Conclusion
    history: list[ev.DecisionEntry]
    ballot: ev.BallotView
    statuses: tuple[str, ...]
    registry_tracts: list[str]
    tract_ids: list[str]
    blinded: bool
    plot_svg: str
    rule_set: str = ""
    thresholds: dict[str, str] = field(default_factory=dict)
    registry: ev.RegistryComparison | None = None
    """For an UNMATCHED_TRACT: the subject's registry and the same-visit evidence."""
    subject_tracts: list[ev.RegistryTract] = field(default_factory=list)


def conflict_view(
    platform: VisiblePlatform,
    conflict_id: str,
    study: str | None,
    *,
    now: datetime,
    overdue_days: int,
    image_url: str | None = None,
) -> ConflictView:
    """Everything the conflict page shows, as the viewer's role may see it; raises
    UnknownConflictError for an unknown id. ``image_url``: the core lab viewer's URL template
    (``TRACT_WEB_IMAGE_URL``); a read whose id had to be scrubbed for the role gets no link."""
    study, row, result = platform.find_conflict(conflict_id, study)
    subject, tract_id = row["subject_id"], row["tract_id"]
    # Evidence recorded under tract ids the committee mapped onto this tract belongs here too.
    aliases = (
        tract_mappings(result.conflicts.lazy())
        .filter(
            (pl.col("decision_status") == "MAPPED")
            & (pl.col("subject_id") == subject)
            & (pl.col("maps_to") == tract_id)
        )
        .collect()["tract_id"]
        .to_list()
    )
    tract_ids = [tract_id, *aliases]

    def records(kind: str) -> pl.DataFrame:
        return platform.records(kind, study, subject=subject).collect()

    subject_records = {
        kind: records(kind)
        for kind in ("subject", "tract", "clinical_exam", "mri_read", "pathology_report")
    }
    mine = {
        kind: frame.filter(pl.col("tract_id").is_in(tract_ids))
        for kind, frame in subject_records.items()
        if "tract_id" in frame.columns
    }
    show_ids = not platform.policy.blinds_readers
    tracts = result.tracts.filter(
        (pl.col("subject_id") == subject) & (pl.col("tract_id") == tract_id)
    )
    tract = tracts.row(0, named=True) if tracts.height else None
    visits = result.visits.filter(
        (pl.col("subject_id") == subject) & (pl.col("tract_id") == tract_id)
    )
    rules = platform.rules
    thresholds = ev.rule_thresholds(rules)
    registry = None
    if row["type"] == "UNMATCHED_TRACT":
        registry = ev.registry_comparison(
            tract_id,
            subject_records["tract"],
            subject_records["clinical_exam"],
            subject_records["mri_read"],
            rules.visits,
        )
    votes = platform.records("committee_vote", study, subject=subject).collect()
    unsigned = platform.records("committee_decision", study, subject=subject).collect()
    return ConflictView(
        summary=summarize(study, row, now, overdue_days),
        timeline=ev.exam_timeline(mine["clinical_exam"], visits, rules.visits),
        mri=ev.mri_side_by_side(
            mine["mri_read"],
            rules,
            show_ids,
            (rules.final_mri, "MRI_BL"),
            image_linker(image_url, study, show_ids),
        ),
        pathology=ev.pathology_trend(mine["pathology_report"]),
        conclusion=ev.conclusion(tract, row, ev.describe_events(subject_records), thresholds),
        history=ev.decision_history(votes, unsigned, row, rules.quorum),
        ballot=ev.ballot_view(ballot(votes, row, rules.quorum), rules.quorum, row["fingerprint"]),
        statuses=ev.allowed_statuses(row["type"]),
        registry_tracts=result.tracts.filter(pl.col("subject_id") == subject)["tract_id"].to_list(),
        tract_ids=tract_ids,
        blinded=not show_ids,
        plot_svg=swimmer_svg(
            result.visits.filter(pl.col("subject_id") == subject),
            result.tracts.filter(pl.col("subject_id") == subject),
            rules.visits,
            highlight=(subject, tract_id),
            title=f"{subject}: tract status over visits",
            link=subject_link(study),
        ),
        rule_set=f"{rules.id} version {rules.version}",
        thresholds=thresholds,
        registry=registry,
        subject_tracts=ev.registry_tracts(subject_records["tract"]),
    )


def image_linker(
    template: str | None, study: str, show_ids: bool
) -> Callable[[dict[str, Any]], str | None] | None:
    """The viewer link of a read, or None; never for a read whose id names a reader the role
    may not see (the link would show it)."""
    if not template:
        return None

    def link(read: dict[str, Any]) -> str | None:
        if not show_ids and read.get("_shown_id", read["read_id"]) != read["read_id"]:
            return None
        return image_link(template, study, read)

    return link


# -- dashboard ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Readiness:
    ready: bool
    """No open conflict, no site query left open, no lock in force: a plain lock."""
    message: str
    open_conflicts: int
    pending_tracts: int
    lock_in_force: str | None
    changed_after_lock: int
    queries_open: int = 0
    """Site queries waiting for the site or a lab."""
    queries_answered: int = 0
    """Site queries answered, waiting for the data manager to close them."""
    rejected_open: int = 0
    """Of the queries not closed, how many are rejected rows."""
    lockable: bool = True
    """Whether a lock can be taken now (no open conflict, no lock in force); with queries
    not closed it needs a recorded reason."""

    @property
    def queries_not_closed(self) -> int:
        return self.queries_open + self.queries_answered


@dataclass(frozen=True)
class DashboardView:
    """``report`` holds only what the role may see (``results``: the efficacy figures too);
    without them ``patients`` is empty and ``swimmer`` blank, since both add up to them."""

    study: str
    studies: list[str]
    report: dict[str, Any]
    results: bool
    readiness: Readiness
    patients: list[dict[str, Any]]
    locks: list[dict[str, Any]]
    swimmer: str
    open_conflicts: list[ConflictSummary] = field(default_factory=list)
    unlock_requests: list[UnlockRequest] = field(default_factory=list)
    """Every unlock request of the study, newest first, with its signatures and state."""
    subjects_total: int = 0
    """How many patients the study has: ``patients`` and the swimmer plot show the first
    :data:`DASHBOARD_SUBJECTS` of them (the subject list pages through all)."""
    open_conflicts_total: int = 0
    """How many conflicts are open: ``open_conflicts`` lists the first ones (the queue has all)."""


def readiness(
    conflicts: pl.DataFrame,
    tracts: pl.DataFrame,
    locks: pl.DataFrame,
    patients: pl.DataFrame | None = None,
    queries: pl.DataFrame | None = None,
) -> Readiness:
    """Whether a data manager can lock now: a lock is refused while any conflict is open, and
    needs a recorded reason while site queries are not closed (``queries``). With a lock in
    force, what differs from it (outcomes, categories, data after it)."""
    open_ = conflicts.filter(pl.col("status") == "OPEN")
    pending = tracts.filter(
        pl.col("treated") & pl.col("completed") & (pl.col("outcome") == "PENDING")
    ).height
    in_force = None
    published = locks.filter(pl.col("action").is_in(["LOCK", "UNLOCK"])).sort("offset")
    if published.height and published["action"][-1] == "LOCK":
        in_force = published["lock_id"][-1]
    treated = tracts.filter(pl.col("treated"))
    changed = treated.filter(pl.col("post_lock")).height if in_force else 0
    outcomes = _changed(treated) if in_force else 0
    categories = _changed(patients) if in_force and patients is not None else 0
    waiting = answered = rejected = 0
    if queries is not None:
        not_closed = queries.filter(pl.col("status") != "CLOSED")
        waiting = not_closed.filter(pl.col("status") == "OPEN").height
        answered = not_closed.height - waiting
        rejected = not_closed.filter(pl.col("source") == "rejected_row").height
    queries_note = ""
    if waiting or answered:
        queries_note = (
            f"{waiting + answered} site quer{'y' if waiting + answered == 1 else 'ies'} not "
            f"closed ({waiting} waiting for the sites, {answered} answered and waiting for the "
            f"data manager; {rejected} of them rejected rows)"
        )
    if open_.height:
        by_type = ", ".join(
            f"{t} x{n}" for t, n in open_.group_by("type").len().sort("type").iter_rows()
        )
        message = (
            f"Not ready to lock: {open_.height} open conflict(s) ({by_type}); "
            "the committee resolves them in the conflict queue"
        ) + (f"; and {queries_note}" if queries_note else "")
    elif in_force and not (changed or outcomes or categories):
        message = f"Locked as {in_force}: no open conflicts and no data entered after the lock"
    elif in_force:
        message = (
            f"Locked as {in_force}; since the lock {outcomes} tract outcome(s) and {categories} "
            f"patient categor{'y' if categories == 1 else 'ies'} changed, and {changed} treated "
            "tract(s) have data or decisions entered after it. A new lock needs the signed unlock"
        )
    elif queries_note:
        message = f"Not ready to lock: {queries_note}. Close them, or lock with a recorded reason"
    else:
        message = "Ready to lock: no open conflicts" + (
            " and every site query closed" if queries is not None else ""
        )
        if pending:
            message += f" ({pending} completer tract(s) still PENDING will be locked as pending)"
    return Readiness(
        ready=not open_.height and not (waiting or answered) and in_force is None,
        message=message,
        open_conflicts=open_.height,
        pending_tracts=pending,
        lock_in_force=in_force,
        changed_after_lock=changed,
        queries_open=waiting,
        queries_answered=answered,
        rejected_open=rejected,
        lockable=not open_.height and in_force is None,
    )


def _changed(frame: pl.DataFrame) -> int:
    """Rows whose outcome or category differs from the lock in force."""
    return frame["changed_since_lock"].sum() if "changed_since_lock" in frame.columns else 0


DASHBOARD_SUBJECTS = 100
"""Patients (and their swimmer lanes) and open conflicts the dashboard lists: a 100,000-subject
study's page would otherwise draw every lane (minutes, megabytes); the subject list and the
conflict queue page through them all."""


def dashboard_view(
    platform: VisiblePlatform, study: str, studies: list[str], shown: int | None = None
) -> DashboardView:
    """The dashboard. Study-level efficacy figures (completer, ITT, tract and discharge tables
    with their CIs, the sensitivity table, pathology medians and tests) come only with the
    role's ``sees_results``; so do the per-patient categories and the study's swimmer plot,
    whose rows add up to the same figures. Readiness, locks, reader agreement and the
    committee's own counts are for everyone. Patients, lanes and open conflicts: the first
    ``shown`` (by subject id; by type, subject and tract; default :data:`DASHBOARD_SUBJECTS`),
    with their totals."""
    shown = DASHBOARD_SUBJECTS if shown is None else shown
    report = platform.report(study)  # first: the tables below are then of the same read
    tracts, every = platform.table(study, "tracts"), platform.table(study, "patients")
    first = every.sort("subject_id").head(shown).select("subject_id")
    opened = platform.conflicts(study).filter(pl.col("status") == "OPEN")
    results = platform.policy.sees_results
    locks = platform.records("lock", study).collect()
    queries = platform.queries(study)
    decided = (
        tracts.filter(pl.col("treated"))
        .group_by("subject_id")
        .agg(by_committee=(pl.col("decided_by") == "COMMITTEE").sum())
    )
    patients = (
        first.join(every, on="subject_id", how="left", maintain_order="left")
        .join(decided, on="subject_id", how="left", maintain_order="left")
        .select(
            "subject_id",
            "subject_status",
            "category",
            "n_treated",
            "n_closed",
            "n_pending",
            "by_committee",
            "admire_category",
            "clinical_only_category",
        )
        .to_dicts()
    )
    return DashboardView(
        study=study,
        studies=studies,
        report=report,
        results=results,
        readiness=readiness(platform.conflicts(study), tracts, locks, every, queries),
        patients=patients if results else [],
        locks=[
            {
                "lock_id": r["lock_id"],
                "action": r["action"],
                "level": r["level"],
                "requested_by": r["requested_by"],
                "reason": r["reason"],
                "at": ev.text(r["at"]),
                "location": r["location"],
            }
            for r in locks.filter(pl.col("action") != "CLAIM")
            .sort("offset", descending=True)
            .iter_rows(named=True)
        ],
        swimmer=swimmer_svg(
            platform.table(study, "visits", first["subject_id"].to_list()),
            tracts.join(first, on="subject_id", how="semi"),
            platform.rules.visits,
            link=subject_link(study),
        )
        if results
        else "",
        open_conflicts=[
            summarize(study, r, datetime.now(UTC), 10**6)
            for r in opened.sort("type", "subject_id", "tract_id").head(shown).iter_rows(named=True)
        ],
        unlock_requests=unlock_requests(platform, study, locks),
        subjects_total=every.height,
        open_conflicts_total=opened.height,
    )


def unlock_requests(
    platform: VisiblePlatform, study: str, locks: pl.DataFrame | None = None
) -> list[UnlockRequest]:
    """Every unlock request of the study, newest first, with its signatures and state (the
    dashboard and the lock page show them, with the signed request and approval forms)."""
    here = pl.lit(study, pl.String)
    locks = platform.records("lock", study).collect() if locks is None else locks
    unlocking = platform.records("unlock_request", study).collect()
    return summarise(unlocking.with_columns(study=here), locks.with_columns(study=here))[::-1]


def lock_requests(platform: VisiblePlatform, study: str) -> list[dict[str, str]]:
    """The locks signed for the database_lock DAG and where each stands (the lock page)."""
    from services.lock.lock import lock_requests as standing

    locks = platform.records("lock", study).collect()
    return standing(platform.records("lock_request", study).collect(), locks)


def dashboard_readiness(platform: VisiblePlatform, study: str) -> Readiness:
    """The study's readiness to lock (the lock page shows it too)."""
    locks = platform.records("lock", study).collect()
    return readiness(
        platform.conflicts(study),
        platform.table(study, "tracts"),
        locks,
        platform.table(study, "patients"),
        platform.queries(study),
    )


def subject_link(study: str) -> Callable[[str], str]:
    """The subject page's address, for links from plots and tables."""
    return lambda subject: f"/subjects/{quote(subject, safe='')}?study={quote(study, safe='')}"


# -- audit --------------------------------------------------------------------------------------
def _moment(value: str | None, name: str, end: bool) -> str | None:
    """An ISO date or date-time as the trail's sortable text (a bare date covers its whole day)."""
    value = _clean(value)
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return f"{day.isoformat()}T{'23:59:59' if end else '00:00:00'}Z"
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _bad_request(
            f"{name} must be a date (2026-11-26) or a date-time (2026-11-26T09:30), got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class AuditFilters:
    subject: str | None = None
    user: str | None = None
    kind: str | None = None
    since: str | None = None
    until: str | None = None
    page: int = 1

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> AuditFilters:
        from services.web.queue import _int

        _moment(query.get("since"), "since", end=False)
        _moment(query.get("until"), "until", end=True)
        subject = _clean(query.get("subject"))
        return cls(
            subject=subject and subject.upper(),
            user=_clean(query.get("user")),
            kind=_clean(query.get("kind")),
            since=_clean(query.get("since")),
            until=_clean(query.get("until")),
            page=_int(query.get("page"), "page", 1),
        )

    def query(self) -> dict[str, str]:
        """The filters (not the page) as query parameters."""
        return {k: v for k, v in self.__dict__.items() if v and k != "page"}


def filter_audit(trail: pl.DataFrame, f: AuditFilters) -> pl.DataFrame:
    """The trail rows matching every filter (user: part of who, any case), newest first
    (rows whose time is withheld from the role last)."""
    rows = trail
    if f.subject:
        rows = rows.filter(subject_is(f.subject))
    if f.user:
        rows = rows.filter(
            pl.col("who").str.to_lowercase().str.contains(f.user.lower(), literal=True)
        )
    if f.kind:
        rows = rows.filter(pl.col("kind") == f.kind)
    if since := _moment(f.since, "since", end=False):
        rows = rows.filter(pl.col("at") >= since)
    if until := _moment(f.until, "until", end=True):
        rows = rows.filter(pl.col("at") <= until)
    return rows.sort("at", "kind", "offset", descending=True, nulls_last=True)


@dataclass(frozen=True)
class AuditView:
    study: str
    studies: list[str]
    filters: AuditFilters
    rows: list[dict[str, Any]]
    matching: int
    total: int
    """Rows of the trail shown: the study's, or the subject's when it was read for one."""
    kinds: list[str]
    limit: int = AUDIT_LIMIT
    page: int = 1
    pages: int = 1

    def page_href(self, page: int) -> str:
        query = {"study": self.study} | self.filters.query() | {"page": str(page)}
        return "/audit?" + urlencode(query)

    @property
    def export_href(self) -> str:
        """The CSV export of exactly what the page shows (all matching rows)."""
        return "/audit.csv?" + urlencode({"study": self.study} | self.filters.query())


def audit_view(trail: pl.DataFrame, study: str, studies: list[str], f: AuditFilters) -> AuditView:
    """``trail``: the study's audit trail as the viewer's role may see it, or, when ``f``
    filters by subject, that subject's rows of it (``VisiblePlatform.audit(study, subject)``
    reads them without building the study's trail)."""
    rows = filter_audit(trail, f)
    pages = max(1, -(-rows.height // AUDIT_LIMIT))
    page = min(f.page, pages)
    return AuditView(
        study=study,
        studies=studies,
        filters=f,
        rows=rows.slice((page - 1) * AUDIT_LIMIT, AUDIT_LIMIT).to_dicts(),
        matching=rows.height,
        total=trail.height,
        kinds=sorted(AUDIT_KINDS),
        page=page,
        pages=pages,
    )


def _defuse(value: str | None) -> str | None:
    """A cell a spreadsheet would run as a formula gets a leading quote (OWASP CSV injection)."""
    return "'" + value if value and value[0] in "=+-@\t\r" else value


def audit_csv(trail: pl.DataFrame, f: AuditFilters) -> str:
    """The filtered trail, oldest first, as CSV safe to open in a spreadsheet."""
    rows = filter_audit(trail, f).sort("at", "kind", "offset", nulls_last=True)
    text_columns = [c for c, t in rows.schema.items() if t == pl.String]
    rows = rows.with_columns(
        pl.col(c).map_elements(_defuse, return_dtype=pl.String) for c in text_columns
    )
    buffer = io.StringIO()
    rows.write_csv(buffer)
    return buffer.getvalue()
