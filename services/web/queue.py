"""The conflict queue as a committee member works through it: filters (type, status, subject,
assignee, "my votes pending"), a sort, pages, and the walk from one conflict to the next.

A member's last queue (its filters, sort and page) is kept in a cookie (``tract_queue``), so the
conflict page can offer the previous and next conflict *of that queue* and the way back to the
same page of it, even after a decision moved the conflict out of the filter: the walk then
continues from where the conflict stood. Nothing here knows about HTTP but that query string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import polars as pl

from services.adjudicator.rules.conflicts import TYPES
from services.web.errors import AccessRefusedError
from services.web.labels import human

QUEUE_STATUSES = ("OPEN", "DECIDED", "RESOLVED", "ALL")
SORTS = ("age", "type", "subject", "status", "assignee")
PAGE_SIZES = (10, 25, 50, 100)
PER_PAGE = 25
ASSIGNED = ("", "me", "none", "any")
"""Assignment filter: anyone (""), mine, unassigned, or assigned to anyone."""


def _bad_request(message: str) -> AccessRefusedError:
    return AccessRefusedError(message, status_code=400)


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _int(value: str | None, name: str, default: int, allowed: tuple[int, ...] = ()) -> int:
    if _clean(value) is None:
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise _bad_request(f"{name} must be a whole number, got {value!r}") from None
    if number < 1 or (allowed and number not in allowed):
        choices = ", ".join(map(str, allowed)) if allowed else "1 or more"
        raise _bad_request(f"{name} must be {choices}, got {number}")
    return number


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
    assignee: str | None = None
    voted: bool = False
    """Whether the viewer has voted (or decided) on this conflict's current evidence."""
    votes: int = 0
    """Votes (or decisions) by anyone on the current evidence."""

    @property
    def href(self) -> str:
        return f"/conflicts/{self.conflict_id}?study={self.study}"


def summarize(
    study: str, row: Mapping[str, Any], now: datetime, overdue_days: int
) -> ConflictSummary:
    """One conflict with its age (from when it was first raised) and the overdue flag, which
    only an OPEN conflict can carry."""
    from services.web.evidence import text

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
        raised_at=text(raised),
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
    assigned: str = ""
    pending: bool = False
    sort: str = "age"
    desc: bool = False
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> QueueFilters:
        status = (_clean(query.get("status")) or "OPEN").upper()
        if status not in QUEUE_STATUSES:
            names = ", ".join(f"{s} ({human(s, 'conflict_status')})" for s in QUEUE_STATUSES)
            raise _bad_request(f"status must be one of {names}; got {status!r}")
        kind = _clean(query.get("type"))
        if kind and kind not in TYPES:
            raise _bad_request(f"type must be one of {', '.join(TYPES)}; got {kind!r}")
        subject = _clean(query.get("subject"))
        assigned = (_clean(query.get("assigned")) or "").lower()
        if assigned not in ASSIGNED:
            raise _bad_request(f"assigned must be me, none or any; got {assigned!r}")
        sort = (_clean(query.get("sort")) or "age").lower()
        if sort not in SORTS:
            raise _bad_request(f"sort must be one of {', '.join(SORTS)}; got {sort!r}")
        return cls(
            study=_clean(query.get("study")),
            type=kind,
            status=status,
            subject=subject and subject.upper(),
            assigned=assigned,
            pending=(_clean(query.get("pending")) or "") in ("1", "yes", "on", "true"),
            sort=sort,
            desc=(_clean(query.get("order")) or "asc").lower() == "desc",
            page=_int(query.get("page"), "page", 1),
            per_page=_int(query.get("per_page"), "per_page", PER_PAGE, PAGE_SIZES),
        )

    def query(self, **changes: Any) -> str:
        """These filters (with ``changes``) as a URL query string; defaults left out."""
        f = replace(self, **changes)
        pairs = {
            "study": f.study,
            "type": f.type,
            "status": None if f.status == "OPEN" else f.status,
            "subject": f.subject,
            "assigned": f.assigned or None,
            "pending": "1" if f.pending else None,
            "sort": None if f.sort == "age" else f.sort,
            "order": "desc" if f.desc else None,
            "page": None if f.page == 1 else str(f.page),
            "per_page": None if f.per_page == PER_PAGE else str(f.per_page),
        }
        return urlencode({k: v for k, v in pairs.items() if v})

    def href(self, **changes: Any) -> str:
        query = self.query(**changes)
        return "/conflicts" + (f"?{query}" if query else "")

    def page_href(self, page: int) -> str:
        return self.href(page=page)

    def sort_href(self, key: str) -> str:
        """The queue sorted by ``key`` (the other way round when it already is), first page."""
        return self.href(sort=key, desc=not self.desc if self.sort == key else False, page=1)

    @property
    def described(self) -> str:
        """The filters in words, for the walk ("Open · assigned to me · by age")."""
        parts = [human(self.status, "conflict_status")]
        if self.type:
            parts.append(human(self.type, "conflict_type"))
        if self.subject:
            parts.append(f"subject {self.subject}")
        if self.assigned:
            parts.append(
                {"me": "assigned to me", "none": "unassigned", "any": "assigned"}[self.assigned]
            )
        if self.pending:
            parts.append("my votes pending")
        if self.study:
            parts.append(f"study {self.study}")
        parts.append(f"sorted by {self.sort}" + (" (descending)" if self.desc else ""))
        return " · ".join(parts)


def _sort_key(sort: str) -> Callable[[ConflictSummary], tuple]:
    keys: dict[str, Callable[[ConflictSummary], tuple]] = {
        "age": lambda r: (-(r.age_days or 0), r.study, r.type, r.subject_id, r.tract_id),
        "type": lambda r: (r.type, r.study, r.subject_id, r.tract_id),
        "subject": lambda r: (r.study, r.subject_id, r.tract_id, r.type),
        "status": lambda r: (r.status, -(r.age_days or 0), r.subject_id, r.tract_id),
        "assignee": lambda r: (r.assignee or "~", -(r.age_days or 0), r.subject_id),
    }
    return keys[sort]


@dataclass(frozen=True)
class Step:
    """Where a conflict stands in the member's queue: its neighbours and the way back."""

    filters: QueueFilters
    position: int | None
    """1-based position in the filtered queue (None once the conflict left the filter)."""
    total: int
    previous: ConflictSummary | None
    next: ConflictSummary | None
    back: str


@dataclass(frozen=True)
class QueueView:
    filters: QueueFilters
    rows: list[ConflictSummary]
    """The page shown."""
    open_by_type: list[tuple[str, int]]
    open_total: int
    overdue_total: int
    overdue_days: int
    studies: list[str]
    matching: int = 0
    pages: int = 1
    mine_open: int = 0
    mine_pending: int = 0
    members: list[str] = field(default_factory=list)
    ordered: list[ConflictSummary] = field(default_factory=list)
    """Every conflict of the studies shown, in the queue's order (the walk reads it)."""
    types: tuple[str, ...] = TYPES
    statuses: tuple[str, ...] = QUEUE_STATUSES
    sorts: tuple[str, ...] = SORTS
    page_sizes: tuple[int, ...] = PAGE_SIZES

    def keep(self, row: ConflictSummary, viewer: str | None = None) -> bool:
        return _matches(row, self.filters, viewer)

    def step(self, conflict_id: str, viewer: str | None) -> Step:
        """The previous and next conflict of the filtered queue around ``conflict_id``; a
        conflict no longer in the filter keeps its place in the order."""
        kept = [r for r in self.ordered if _matches(r, self.filters, viewer)]
        ids = [r.conflict_id for r in kept]
        seq = [r for r in self.ordered if r.conflict_id == conflict_id or r.conflict_id in ids]
        here = next((i for i, r in enumerate(seq) if r.conflict_id == conflict_id), None)
        if here is None:
            return Step(self.filters, None, len(kept), None, kept[0] if kept else None, self.back())
        previous = next((r for r in reversed(seq[:here]) if r.conflict_id in ids), None)
        following = next((r for r in seq[here + 1 :] if r.conflict_id in ids), None)
        position = ids.index(conflict_id) + 1 if conflict_id in ids else None
        anchor = following if position is None else seq[here]
        return Step(
            self.filters,
            position,
            len(kept),
            previous,
            following,
            self.back(anchor.conflict_id if anchor else None, kept),
        )

    def back(
        self, conflict_id: str | None = None, kept: list[ConflictSummary] | None = None
    ) -> str:
        """The queue at the page holding ``conflict_id`` (with it marked), else its page."""
        if conflict_id is None or kept is None:
            return self.filters.href()
        ids = [r.conflict_id for r in kept]
        page = ids.index(conflict_id) // self.filters.per_page + 1
        query = self.filters.query(page=page)
        return (
            "/conflicts?" + (f"{query}&" if query else "") + f"at={conflict_id}#row-{conflict_id}"
        )


def _matches(row: ConflictSummary, f: QueueFilters, viewer: str | None) -> bool:
    if f.subject and row.subject_id.upper() != f.subject:
        return False
    if f.type and row.type != f.type:
        return False
    if f.status != "ALL" and row.status != f.status:
        return False
    if f.assigned == "me" and row.assignee != viewer:
        return False
    if f.assigned == "none" and row.assignee:
        return False
    if f.assigned == "any" and not row.assignee:
        return False
    return not (f.pending and not _pending(row, viewer))


def _pending(row: ConflictSummary, viewer: str | None) -> bool:
    """Open, the viewer has not voted on its current evidence, and it is theirs or others have
    started voting on it (the quorum waits for them)."""
    if row.status != "OPEN" or row.voted or viewer is None:
        return False
    return row.assignee == viewer or row.votes > 0


def votes_of(votes: pl.DataFrame, decisions: pl.DataFrame) -> pl.DataFrame:
    """(conflict_id, member, fingerprint): who signed a vote on which conflict, on which
    evidence (``committee_vote``), and who took part in a decision recorded before votes were
    signed (``committee_decision`` members), so "my votes pending" counts both."""
    schema = {"conflict_id": pl.String, "member": pl.String, "fingerprint": pl.String}
    frames = [pl.DataFrame(schema=schema)]
    if not votes.is_empty():
        frames.append(votes.select("conflict_id", member="voter", fingerprint="fingerprint"))
    if not decisions.is_empty() and "members" in decisions.columns:
        frames.append(
            decisions.select("conflict_id", member="members", fingerprint="fingerprint")
            .explode("member")
            .drop_nulls("member")
        )
    return pl.concat([f.cast(schema) for f in frames], how="vertical")


def conflict_queue(
    conflicts: Mapping[str, pl.DataFrame],
    filters: QueueFilters,
    now: datetime,
    overdue_days: int,
    *,
    assignments: Mapping[str, pl.DataFrame] | None = None,
    votes: Mapping[str, pl.DataFrame] | None = None,
    viewer: str | None = None,
    members: list[str] | None = None,
) -> QueueView:
    """Conflicts per study, filtered, sorted (oldest first by default) and paged; counts per
    type over the open ones. ``assignments``: per study, the assignment in force per conflict
    (``services.assignments.in_force``); ``votes``: per study, (conflict_id, member,
    fingerprint) of every vote; ``viewer``: who asks (for "assigned to me", "my votes pending")."""
    rows: list[ConflictSummary] = []
    for study, frame in conflicts.items():
        if filters.study and study != filters.study:
            continue
        assigned = {}
        if assignments and study in assignments:
            assigned = dict(assignments[study].select("conflict_id", "assignee").iter_rows())
        cast: dict[str, set[str]] = {}
        if votes and study in votes:
            for cid, member, fingerprint in votes[study].iter_rows():
                cast.setdefault(f"{cid}|{fingerprint}", set()).add(member)
        for r in frame.iter_rows(named=True):
            voters = cast.get(f"{r['conflict_id']}|{r.get('fingerprint')}", set())
            rows.append(
                replace(
                    summarize(study, r, now, overdue_days),
                    assignee=assigned.get(r["conflict_id"]),
                    voted=viewer in voters,
                    votes=len(voters),
                )
            )
    rows.sort(key=_sort_key(filters.sort), reverse=filters.desc)
    by_subject = [r for r in rows if not filters.subject or r.subject_id.upper() == filters.subject]
    open_rows = [r for r in by_subject if r.status == "OPEN"]
    counts = {t: sum(r.type == t for r in open_rows) for t in TYPES}
    kept = [r for r in rows if _matches(r, filters, viewer)]
    pages = max(1, -(-len(kept) // filters.per_page))
    page = min(filters.page, pages)
    start = (page - 1) * filters.per_page
    return QueueView(
        filters=replace(filters, page=page),
        rows=kept[start : start + filters.per_page],
        open_by_type=[(t, n) for t, n in counts.items() if n],
        open_total=len(open_rows),
        overdue_total=sum(r.overdue for r in open_rows),
        overdue_days=overdue_days,
        studies=sorted(conflicts),
        matching=len(kept),
        pages=pages,
        mine_open=sum(r.assignee == viewer for r in open_rows) if viewer else 0,
        mine_pending=sum(_pending(r, viewer) for r in rows),
        members=members or [],
        ordered=rows,
    )
