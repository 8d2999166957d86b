"""What each page shows, assembled from the platform's results as plain view objects.

The routes call these and hand the result to a template; nothing here knows about HTTP. The
queue's age and overdue flag, the audit filters and the readiness to lock are decided here,
where they can be tested with plain frames. What a role may see is not: every frame arrives
already blinded, read through a :class:`~services.web.visibility.VisiblePlatform`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

import polars as pl

from services.adjudicator.committee import tract_mappings
from services.adjudicator.rules.conflicts import TYPES
from services.adjudicator.votes import ballot
from services.lock.unlock import UnlockRequest, summarise
from services.web import evidence as ev
from services.web.errors import AccessRefusedError
from services.web.plots import swimmer_svg
from services.web.visibility import VisiblePlatform

QUEUE_STATUSES = ("OPEN", "DECIDED", "RESOLVED", "ALL")
AUDIT_LIMIT = 500


def _bad_request(message: str) -> AccessRefusedError:
    return AccessRefusedError(message, status_code=400)


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


# -- conflicts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConflictSummary:
    study: str
    conflict_id: str
    type: str
    subject_id: str
    tract_id: str
    about: str | None
    detail: str | None
    status: str
    raised_at: str
    age_days: int | None
    overdue: bool
    reopened_reason: str | None
    fingerprint: str | None
    decision_id: str | None
    decision_status: str | None


def summarize(
    study: str, row: Mapping[str, Any], now: datetime, overdue_days: int
) -> ConflictSummary:
    """One conflict with its age (from when it was first raised) and the overdue flag, which
    only an OPEN conflict can carry."""
    raised = row.get("first_raised_at")
    age = None if raised is None else max((now - raised).days, 0)
    return ConflictSummary(
        study=study,
        conflict_id=row["conflict_id"],
        type=row["type"],
        subject_id=row["subject_id"],
        tract_id=row["tract_id"],
        about=row.get("about"),
        detail=row.get("detail"),
        status=row["status"],
        raised_at=ev.text(raised),
        age_days=age,
        overdue=row["status"] == "OPEN" and age is not None and age >= overdue_days,
        reopened_reason=row.get("reopened_reason"),
        fingerprint=row.get("fingerprint"),
        decision_id=row.get("decision_id"),
        decision_status=row.get("decision_status"),
    )


@dataclass(frozen=True)
class QueueFilters:
    study: str | None = None
    type: str | None = None
    status: str = "OPEN"
    subject: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> QueueFilters:
        status = (_clean(query.get("status")) or "OPEN").upper()
        if status not in QUEUE_STATUSES:
            raise _bad_request(f"status must be one of {', '.join(QUEUE_STATUSES)}, got {status!r}")
        kind = _clean(query.get("type"))
        if kind and kind not in TYPES:
            raise _bad_request(f"type must be one of {', '.join(TYPES)}, got {kind!r}")
        subject = _clean(query.get("subject"))
        return cls(_clean(query.get("study")), kind, status, subject and subject.upper())


@dataclass(frozen=True)
class QueueView:
    filters: QueueFilters
    rows: list[ConflictSummary]
    open_by_type: list[tuple[str, int]]
    open_total: int
    overdue_total: int
    overdue_days: int
    studies: list[str]
    types: tuple[str, ...] = TYPES
    statuses: tuple[str, ...] = QUEUE_STATUSES


def conflict_queue(
    conflicts: Mapping[str, pl.DataFrame], filters: QueueFilters, now: datetime, overdue_days: int
) -> QueueView:
    """Conflicts per study, filtered; counts per type over the open ones; oldest first."""
    rows: list[ConflictSummary] = []
    for study, frame in conflicts.items():
        if filters.study and study != filters.study:
            continue
        rows += [summarize(study, r, now, overdue_days) for r in frame.iter_rows(named=True)]
    if filters.subject:
        rows = [r for r in rows if r.subject_id.upper() == filters.subject]
    open_rows = [r for r in rows if r.status == "OPEN"]
    counts = {t: sum(r.type == t for r in open_rows) for t in TYPES}
    if filters.type:
        rows = [r for r in rows if r.type == filters.type]
    if filters.status != "ALL":
        rows = [r for r in rows if r.status == filters.status]
    rows.sort(key=lambda r: (-(r.age_days or 0), r.study, r.type, r.subject_id, r.tract_id))
    return QueueView(
        filters=filters,
        rows=rows,
        open_by_type=[(t, n) for t, n in counts.items() if n],
        open_total=len(open_rows),
        overdue_total=sum(r.overdue for r in open_rows),
        overdue_days=overdue_days,
        studies=sorted(conflicts),
    )


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


def conflict_view(
    platform: VisiblePlatform,
    conflict_id: str,
    study: str | None,
    *,
    now: datetime,
    overdue_days: int,
) -> ConflictView:
    """Everything the conflict page shows, as the viewer's role may see it; raises
    UnknownConflictError for an unknown id."""
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
    votes = platform.records("committee_vote", study, subject=subject).collect()
    unsigned = platform.records("committee_decision", study, subject=subject).collect()
    return ConflictView(
        summary=summarize(study, row, now, overdue_days),
        timeline=ev.exam_timeline(mine["clinical_exam"], visits, rules.visits),
        mri=ev.mri_side_by_side(mine["mri_read"], rules, show_ids, (rules.final_mri, "MRI_BL")),
        pathology=ev.pathology_trend(mine["pathology_report"]),
        conclusion=ev.conclusion(tract, row, ev.describe_events(subject_records)),
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
        ),
    )


# -- dashboard ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Readiness:
    ready: bool
    message: str
    open_conflicts: int
    pending_tracts: int
    lock_in_force: str | None
    changed_after_lock: int


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
    unlock_requests: list[UnlockRequest] = field(default_factory=list)
    """Every unlock request of the study, newest first, with its signatures and state."""


def readiness(
    conflicts: pl.DataFrame,
    tracts: pl.DataFrame,
    locks: pl.DataFrame,
    patients: pl.DataFrame | None = None,
) -> Readiness:
    """Whether a data manager can lock now: a lock is refused while any conflict is open.
    With a lock in force, what differs from it (outcomes, categories, data after it)."""
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
    if open_.height:
        by_type = ", ".join(
            f"{t} x{n}" for t, n in open_.group_by("type").len().sort("type").iter_rows()
        )
        message = (
            f"Not ready to lock: {open_.height} open conflict(s) ({by_type}); "
            "the committee resolves them in the conflict queue"
        )
    elif in_force and not (changed or outcomes or categories):
        message = f"Locked as {in_force}: no open conflicts and no data entered after the lock"
    elif in_force:
        message = (
            f"Locked as {in_force}; since the lock {outcomes} tract outcome(s) and {categories} "
            f"patient categor{'y' if categories == 1 else 'ies'} changed, and {changed} treated "
            "tract(s) have data or decisions entered after it. A new lock needs the signed unlock"
        )
    else:
        message = "Ready to lock: no open conflicts"
        if pending:
            message += f" ({pending} completer tract(s) still PENDING will be locked as pending)"
    return Readiness(not open_.height, message, open_.height, pending, in_force, changed)


def _changed(frame: pl.DataFrame) -> int:
    """Rows whose outcome or category differs from the lock in force."""
    return frame["changed_since_lock"].sum() if "changed_since_lock" in frame.columns else 0


def dashboard_view(platform: VisiblePlatform, study: str, studies: list[str]) -> DashboardView:
    """The dashboard. Study-level efficacy figures (completer, ITT, tract and discharge tables
    with their CIs, the sensitivity table, pathology medians and tests) come only with the
    role's ``sees_results``; so do the per-patient categories and the study's swimmer plot,
    whose rows add up to the same figures. Readiness, locks, reader agreement and the
    committee's own counts are for everyone."""
    result = platform.adjudicate(study)
    report = platform.report(study)
    results = platform.policy.sees_results
    locks = platform.records("lock", study).collect()
    here = pl.lit(study, pl.String)
    unlocking = platform.records("unlock_request", study).collect()
    requests = summarise(unlocking.with_columns(study=here), locks.with_columns(study=here))
    decided = (
        result.tracts.filter(pl.col("treated"))
        .group_by("subject_id")
        .agg(by_committee=(pl.col("decided_by") == "COMMITTEE").sum())
    )
    patients = (
        result.patients.join(decided, on="subject_id", how="left")
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
        readiness=readiness(result.conflicts, result.tracts, locks, result.patients),
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
        swimmer=swimmer_svg(result.visits, result.tracts, platform.rules.visits) if results else "",
        unlock_requests=requests[::-1],
    )


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

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> AuditFilters:
        _moment(query.get("since"), "since", end=False)
        _moment(query.get("until"), "until", end=True)
        subject = _clean(query.get("subject"))
        return cls(
            subject=subject and subject.upper(),
            user=_clean(query.get("user")),
            kind=_clean(query.get("kind")),
            since=_clean(query.get("since")),
            until=_clean(query.get("until")),
        )

    def query(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}


def filter_audit(trail: pl.DataFrame, f: AuditFilters) -> pl.DataFrame:
    """The trail rows matching every filter (user: part of who, any case), newest first
    (rows whose time is withheld from the role last)."""
    rows = trail
    if f.subject:
        rows = rows.filter(pl.col("subject_id").str.to_uppercase() == f.subject)
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
    kinds: list[str]
    limit: int = AUDIT_LIMIT

    @property
    def export_href(self) -> str:
        """The CSV export of exactly what the page shows (all matching rows)."""
        return "/audit.csv?" + urlencode({"study": self.study} | self.filters.query())


def audit_view(trail: pl.DataFrame, study: str, studies: list[str], f: AuditFilters) -> AuditView:
    """``trail``: the study's audit trail as the viewer's role may see it."""
    rows = filter_audit(trail, f)
    return AuditView(
        study=study,
        studies=studies,
        filters=f,
        rows=rows.head(AUDIT_LIMIT).to_dicts(),
        matching=rows.height,
        total=trail.height,
        kinds=sorted(trail["kind"].unique().to_list()),
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
