"""The evidence the committee weighs on one conflict, as display-ready view objects.

Pure functions over frames that are already blinded for the viewer's role
(``visibility.py``: hidden fields withheld, free text scrubbed of reader identities). Readers
are always labelled by role (Reader 1, Reader 2, Adjudicator), with their identity only for
roles that may see it; only an allow-list of fields reaches the page, and injections are not
part of it. Per-version statuses come from the rules themselves (``clinical.status``,
``mri.healed``), never from the template.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import polars as pl

import schemas
from services.adjudicator.committee import MAPPING_STATUSES, OUTCOME_STATUSES
from services.adjudicator.engine import used_event_ids
from services.adjudicator.rules.clinical import exam_status, visit_status
from services.adjudicator.rules.conflicts import UNMATCHED_TRACT
from services.adjudicator.rules.mri import large_collection, mri_healed
from services.adjudicator.ruleset import RuleSet
from services.adjudicator.state import current
from services.adjudicator.votes import Ballot, decisions_from_votes, outcome_label
from services.signatures import manifestation

READER_ROLES = ("R1", "R2", "ADJ")
ROLE_LABEL = {"R1": "Reader 1", "R2": "Reader 2", "ADJ": "Adjudicator"}
MARKERS = (
    ("cd68_per_hpf", "CD68+ macrophages / HPF"),
    ("cd20_per_hpf", "CD20+ B cells / HPF"),
    ("cd31_per_hpf", "CD31+ microvessels / HPF"),
    ("inflammation_grade", "Inflammation grade (0-3)"),
    ("fibrosis_grade", "Fibrosis grade (0-3)"),
)
PATHOLOGY_VISITS = ("INJ1", "INJ2", "INJ3")
DASH = "—"


def text(value: Any) -> str:
    """One cell: dates as ISO, times to the minute in UTC, booleans as yes/no, null as a dash."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def shown_id(row: dict[str, Any], field: str) -> str:
    """A record's id as shown: ``_shown_id`` when blinding added it (an id that embeds a
    reader's identity is scrubbed for display, while the frame keeps the id for its logic)."""
    return row.get("_shown_id") or row[field]


def reader_label(role: str, reader_id: str | None, show_id: bool) -> str:
    """Reader 1, Reader 2 or Adjudicator, with the identity only when the role may see it."""
    label = ROLE_LABEL.get(role, role)
    return f"{label} ({reader_id})" if show_id and reader_id else label


# -- clinical exams ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ExamVersion:
    record_id: str
    version: int
    tract_id: str
    exam_date: str
    opening: str
    drainage: str
    discharge: str
    status: str
    current: bool
    deleted: bool
    change_reason: str | None
    entered: str


@dataclass(frozen=True)
class VisitEvidence:
    visit: str
    status: str
    inconsistency: str | None
    versions: tuple[ExamVersion, ...]

    @property
    def corrected(self) -> bool:
        return any(v.version > 1 for v in self.versions)


def exam_timeline(
    exams: pl.DataFrame, visits: pl.DataFrame | None, schedule: Sequence[str]
) -> list[VisitEvidence]:
    """Every scheduled visit with every version of its exam records (corrections, deletions).

    ``exams``: all versions of the tract's records; ``visits``: the engine's per-visit status
    for the tract (None or empty for a tract outside the registry: derived the same way here).
    """
    contract = schemas.contract("clinical_exam")
    if visits is None or visits.is_empty():
        visits = (
            visit_status(current(exams.lazy(), contract)).collect()
            if exams.height
            else pl.DataFrame(schema={"visit": pl.String, "status": pl.String})
        )
    live = set(current(exams.lazy(), contract).collect()["event_id"].to_list())
    statuses = exam_status(exams.lazy()).sort("record_id", "record_version").collect()
    by_visit = {row["visit"]: row for row in visits.iter_rows(named=True)}
    # One pass over the tract's records, not a filter and a sort per scheduled visit.
    versions_of: dict[str, list[dict]] = {}
    for version in statuses.iter_rows(named=True):
        versions_of.setdefault(version["visit"], []).append(version)
    timeline = []
    for visit in schedule:
        row = by_visit.get(visit)
        status = "missing" if row is None else row["status"] or "INCONSISTENT"
        timeline.append(
            VisitEvidence(
                visit=visit,
                status=status,
                inconsistency=None if row is None else row.get("inconsistency"),
                versions=tuple(
                    ExamVersion(
                        record_id=v["record_id"],
                        version=v["record_version"],
                        tract_id=v["tract_id"],
                        exam_date=text(v["exam_date"]),
                        opening=v["external_opening"],
                        drainage=text(v["drains_on_compression"]),
                        discharge=text(v["discharge_grade"]),
                        status=v["exam_status"],
                        current=v["event_id"] in live,
                        deleted=bool(v["deleted"]),
                        change_reason=v["change_reason"],
                        entered=f"{v['entered_at']:%Y-%m-%d} by {v['entered_by']}",
                    )
                    for v in versions_of.get(visit, [])
                ),
            )
        )
    return timeline


# -- MRI reads ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ComparisonRow:
    label: str
    values: tuple[str, ...]
    differs: bool = False


@dataclass(frozen=True)
class MriComparison:
    timepoint: str
    readers: tuple[str, ...]
    rows: tuple[ComparisonRow, ...]
    corrections: tuple[str, ...]
    images: tuple[str | None, ...] = ()
    """Per reader column, the link to the read's images in the core lab's viewer (or None)."""


def _collections(sizes: list[float] | None) -> str:
    if not sizes:
        return "none"
    return " x ".join(f"{s:g}" for s in sizes) + " mm"


def _verdict(read: dict[str, Any] | None) -> str:
    """The rule mri.healed on one read, in words."""
    if read is None:
        return DASH
    if not read["evaluable"]:
        return "not evaluable"
    return "healed" if read["healed"] else "not healed"


def _row(label: str, values: tuple[str, ...], compare: bool = True) -> ComparisonRow:
    """A row of the comparison; ``differs`` when Reader 1 and Reader 2 both read and disagree."""
    primary = [v for v in values[:2] if v != DASH]
    return ComparisonRow(label, values, compare and len(set(primary)) == 2)


def _compare(
    timepoint: str,
    by_role: dict[str, dict[str, Any] | None],
    corrections: pl.DataFrame,
    rules: RuleSet,
    show_ids: bool,
    link: Callable[[dict[str, Any]], str | None] | None = None,
) -> MriComparison:
    # At the final MRI the adjudicator's column is always there (empty until a read comes).
    roles = [
        r
        for r in READER_ROLES
        if by_role[r] is not None or r != "ADJ" or timepoint == rules.final_mri
    ]
    reads = [by_role[r] for r in roles]

    def cells(field: str, fmt: Any = text) -> tuple[str, ...]:
        return tuple(DASH if read is None else fmt(read[field]) for read in reads)

    threshold = f"> {rules.mri.collection_mm:g} mm in ≥ {rules.mri.collection_dims} dims"
    return MriComparison(
        timepoint=timepoint,
        readers=tuple(
            reader_label(role, None if read is None else read["reader_id"], show_ids)
            for role, read in zip(roles, reads, strict=True)
        ),
        rows=(
            _row("Scan date", cells("scan_date")),
            _row("Image quality", cells("image_quality")),
            _row("T2-hyperintense tract", cells("t2_hyperintense")),
            _row("Fibrosis", cells("fibrotic")),
            _row("Contrast enhancement", cells("enhancement")),
            _row("Collection sizes", cells("collection_mm", _collections)),
            _row(f"Large collection ({threshold})", cells("large")),
            _row("Rule mri.healed", tuple(_verdict(read) for read in reads)),
            _row("Read version", cells("read_version"), compare=False),
            _row("Read at", cells("read_at"), compare=False),
        ),
        corrections=tuple(
            f"{ROLE_LABEL.get(r['reader_role'], r['reader_role'])} read "
            f"{shown_id(r, 'read_id')} v{r['read_version']}: "
            + ("deleted; " if r["deleted"] else "")
            + (r["change_reason"] or "no reason given")
            for r in corrections.sort("read_version").iter_rows(named=True)
        ),
        images=tuple(None if read is None or link is None else link(read) for read in reads),
    )


def mri_side_by_side(
    reads: pl.DataFrame,
    rules: RuleSet,
    show_ids: bool,
    timepoints: Sequence[str],
    link: Callable[[dict[str, Any]], str | None] | None = None,
) -> list[MriComparison]:
    """R1, R2 and ADJ next to each other per timepoint (current versions), with the rule's
    healed verdict per read and where the two primary readers differ; reader identities only
    with ``show_ids``; ``link(read)`` gives a read's images in the core lab's viewer."""
    if reads.is_empty():
        return []
    live = (
        mri_healed(current(reads.lazy(), schemas.contract("mri_read")), rules.mri)
        .with_columns(large=large_collection(rules.mri))
        .sort("read_at", "offset")
        .collect()
    )
    comparisons = []
    for timepoint in timepoints:
        at = live.filter(pl.col("timepoint") == timepoint)
        if at.is_empty():
            continue
        by_role = {}
        for role in READER_ROLES:
            mine = at.filter(pl.col("reader_role") == role)
            by_role[role] = mine.row(-1, named=True) if mine.height else None
        corrections = reads.filter(
            (pl.col("timepoint") == timepoint) & (pl.col("read_version") > 1)
        )
        comparisons.append(_compare(timepoint, by_role, corrections, rules, show_ids, link))
    return comparisons


# -- pathology ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PathologyTrend:
    visits: tuple[str, ...]
    rows: tuple[ComparisonRow, ...]
    change_label: str
    changes: tuple[str, ...]
    notes: tuple[str, ...]


def pathology_trend(reports: pl.DataFrame) -> PathologyTrend | None:
    """Markers at INJ1, INJ2, INJ3 (current, adequate specimens) and the change INJ1 -> INJ3."""
    if reports.is_empty():
        return None
    live = current(reports.lazy(), schemas.contract("pathology_report")).collect()
    by_visit = {
        v: (
            rows.row(-1, named=True) if (rows := live.filter(pl.col("visit") == v)).height else None
        )
        for v in PATHOLOGY_VISITS
    }

    def value(visit: str, field: str) -> Any:
        report = by_visit[visit]
        if report is None or not report["specimen_adequate"]:
            return None
        return report[field]

    rows, changes = [], []
    for field, label in MARKERS:
        values = tuple(text(value(v, field)) for v in PATHOLOGY_VISITS)
        rows.append(ComparisonRow(label, values))
        first, last = value("INJ1", field), value("INJ3", field)
        changes.append(DASH if first is None or last is None else f"{last - first:+g}")
    adequacy = tuple(
        DASH
        if by_visit[v] is None
        else ("adequate" if by_visit[v]["specimen_adequate"] else "inadequate")
        for v in PATHOLOGY_VISITS
    )
    rows.append(ComparisonRow("Specimen", adequacy))
    changes.append("")
    notes = tuple(
        f"{shown_id(r, 'report_id')} v{r['report_version']}: "
        f"{r['change_reason'] or 'no reason given'}"
        for r in reports.filter(pl.col("report_version") > 1).iter_rows(named=True)
    )
    return PathologyTrend(PATHOLOGY_VISITS, tuple(rows), "INJ1 → INJ3", tuple(changes), notes)


# -- what the rules concluded -------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    rule: str
    label: str
    value: str
    why: str
    threshold: str = ""
    """The rule as the rule set words it, with its thresholds (what a reviewer checks)."""


@dataclass(frozen=True)
class EventRef:
    event_id: str
    what: str


@dataclass(frozen=True)
class Conclusion:
    findings: tuple[Finding, ...]
    outcome: str
    decided_by: str
    decision_id: str | None
    conflict_events: tuple[EventRef, ...]
    outcome_events: tuple[EventRef, ...]


def describe_events(records: dict[str, pl.DataFrame]) -> dict[str, str]:
    """event_id -> a short description of the record version it carries."""
    described: dict[str, str] = {}
    for kind, frame in records.items():
        if frame.is_empty():
            continue
        contract = schemas.contract(kind)
        where = next((c for c in ("visit", "timepoint") if c in frame.columns), None)
        for row in frame.iter_rows(named=True):
            label = f"{kind} {shown_id(row, contract.id_field)} v{row[contract.version_field]}"
            if where:
                label += f" ({row[where]}" + (
                    f", {row['reader_role']})" if kind == "mri_read" else ")"
                )
            described[row["event_id"]] = label
    return described


def rule_thresholds(rules: RuleSet) -> dict[str, str]:
    """Each rule in the reviewer's words, with the thresholds of the rule set in force."""
    confirm = ", ".join(rules.confirmation_visits)
    windows = {w.name: w for w in rules.windows}

    def window(name: str) -> str:
        w = windows.get(name)
        if w is None:
            return ""
        spread = f"±{w.early}" if w.early == w.late else f"-{w.early}/+{w.late}"
        return f"{name} day {w.day} {spread}"

    checked = [window(v) for v in (*rules.confirmation_visits, rules.final_mri)]
    return {
        "clinical": f"clinical.sustained: closed at the last {rules.clinical.confirmations} "
        f"visits ({confirm}), consecutive confirmations at least {rules.clinical.min_gap_days} "
        "days apart",
        "mri": f"mri.healed: no T2-hyperintense tract and no collection over "
        f"{rules.mri.collection_mm:g} mm in {rules.mri.collection_dims} or more dimensions; "
        "mri.consensus: Reader 1 and Reader 2 agree, else an independent adjudicator decides",
        "primary": "primary.closure: sustained clinical closure AND MRI healed",
        "discharge": f"discharge.improved: the {rules.primary_visit} discharge grade at least "
        f"{rules.discharge.min_drop} below {rules.baseline_discharge_visit}",
        "windows": "; ".join(w for w in checked if w)
        + (f" (day 0 = {rules.day0_visit})" if rules.windows else ""),
        "committee": f"a decision needs {rules.quorum} members and a rationale",
    }


def conclusion(
    tract: dict[str, Any] | None,
    conflict: dict[str, Any],
    described: dict[str, str],
    thresholds: dict[str, str] | None = None,
) -> Conclusion:
    """What each rule concluded for the tract, why, with the rule's thresholds, and the
    events behind it."""
    thresholds = thresholds or {}

    def refs(ids: Iterable[str] | None) -> tuple[EventRef, ...]:
        return tuple(EventRef(i, described.get(i, "(not shown)")) for i in ids or ())

    if tract is None:
        return Conclusion(
            findings=(
                Finding(
                    "registry",
                    "Tract registry",
                    "not registered",
                    f"{conflict['tract_id']} is not among the subject's baseline tracts",
                ),
            ),
            outcome=DASH,
            decided_by=DASH,
            decision_id=None,
            conflict_events=refs(conflict["event_ids"]),
            outcome_events=(),
        )
    missing = tract["missing_visits"] or ""
    reason = tract["clinical_reason"] or DASH
    if missing and missing in reason:
        missing = ""  # the rule's reason already names the missing visits
    discharge = f"grade {text(tract['discharge_baseline'])} at INJ1 → {text(tract['discharge_final'])} at FU6"
    findings = (
        Finding(
            "clinical.sustained",
            "Clinical closure",
            tract["clinical"] or "undecided",
            reason + (f"; missing: {missing}" if missing else ""),
            thresholds.get("clinical", ""),
        ),
        Finding(
            "mri.consensus",
            "MRI consensus",
            tract["mri"] or "undecided",
            tract["mri_basis"] or DASH,
            thresholds.get("mri", ""),
        ),
        Finding(
            "primary.closure",
            "Primary outcome by rule",
            tract["rule_outcome"],
            "closed needs sustained clinical closure AND MRI healed"
            + ("; clinical and MRI disagree" if tract["discordant"] else ""),
            thresholds.get("primary", ""),
        ),
        Finding(
            "discharge.improved",
            "Discharge (secondary)",
            {True: "improved", False: "not improved", None: "not evaluable"}[
                tract["discharge_improved"]
            ],
            discharge,
            thresholds.get("discharge", ""),
        ),
        Finding(
            "sensitivity",
            "ADMIRE_COMBINED",
            tract["admire_outcome"],
            "FU6 closure and no large collection (T2 ignored)",
        ),
        Finding(
            "sensitivity",
            "CLINICAL_ONLY",
            tract["clinical_only_outcome"],
            "sustained clinical closure, MRI ignored",
        ),
    )
    return Conclusion(
        findings=findings,
        outcome=tract["outcome"],
        decided_by=tract["decided_by"],
        decision_id=tract["decision_id"],
        conflict_events=refs(conflict["event_ids"]),
        outcome_events=refs(used_event_ids(tract)),
    )


# -- votes and decisions ------------------------------------------------------------------------
@dataclass(frozen=True)
class VoteEntry:
    """One signed vote as every page shows it: the signature manifestation (printed name,
    user name, UTC time, meaning), the outcome, the rationale, and whether it counts now."""

    vote_id: str
    voter: str
    signature: str
    outcome: str
    rationale: str
    signed_via: str
    current_evidence: bool
    counts: bool
    """In the open round, on the current evidence: it counts toward the next decision."""


@dataclass(frozen=True)
class BallotView:
    votes: list[VoteEntry]
    sides: list[tuple[str, list[VoteEntry]]]
    """Outcome -> the votes that count for it now (discordant votes side by side)."""
    discordant: bool
    needed: str
    quorum: int


def ballot_view(current: Ballot, quorum: int, fingerprint: str | None) -> BallotView:
    counting = {v["vote_id"] for group in current.counting.values() for v in group}

    def entry(v: dict[str, Any]) -> VoteEntry:
        return VoteEntry(
            vote_id=v["vote_id"],
            voter=v["voter"],
            signature=manifestation(v["printed_name"], v["voter"], v["signed_at"], v["meaning"]),
            outcome=outcome_label(v["status"], v["maps_to"]),
            rationale=v["rationale"],
            signed_via=v["signed_via"],
            current_evidence=v["fingerprint"] == fingerprint,
            counts=v["vote_id"] in counting,
        )

    return BallotView(
        votes=[entry(v) for v in current.votes],
        sides=[(label, [entry(v) for v in group]) for label, group in current.counting.items()],
        discordant=current.discordant,
        needed=current.needed,
        quorum=quorum,
    )


@dataclass(frozen=True)
class DecisionEntry:
    decision_id: str
    status: str
    maps_to: str | None
    rationale: str
    signatures: list[str]
    """Each signer's signature manifestation; for an unsigned record of before e-signatures,
    who recorded it for whom."""
    signed: bool
    decided_at: str
    supersedes: str | None
    in_force: bool
    stale: bool


def decision_history(
    votes: pl.DataFrame, legacy: pl.DataFrame, conflict: dict[str, Any], quorum: int
) -> list[DecisionEntry]:
    """Every decision on the conflict, newest first: those the signed votes brought into force
    and unsigned records from before e-signatures; which one is in force, which saw old inputs."""
    derived = decisions_from_votes(votes, quorum).with_columns(signed=pl.lit(True))
    old = legacy.with_columns(
        signed=pl.lit(False),
        signatures=pl.concat_list(
            pl.lit("recorded by ")
            + pl.col("recorded_by")
            + pl.lit(" for ")
            + pl.col("members").list.join(", ")
            + pl.lit(" (unsigned: before e-signatures)")
        ),
    )
    columns = [
        "decision_id",
        "conflict_id",
        "status",
        "maps_to",
        "rationale",
        "signatures",
        "signed",
        "decided_at",
        "supersedes",
        "fingerprint",
        "offset",
    ]
    mine = (
        pl.concat([old.select(columns), derived.select(columns)], how="vertical_relaxed")
        .filter(pl.col("conflict_id") == conflict["conflict_id"])
        .sort("decided_at", "offset", descending=True)
    )
    return [
        DecisionEntry(
            decision_id=d["decision_id"],
            status=d["status"],
            maps_to=d["maps_to"],
            rationale=d["rationale"],
            signatures=list(d["signatures"] or []),
            signed=d["signed"],
            decided_at=text(d["decided_at"]),
            supersedes=d["supersedes"],
            in_force=conflict["status"] == "DECIDED"
            and d["decision_id"] == conflict["decision_id"],
            stale=d["fingerprint"] != conflict["fingerprint"],
        )
        for d in mine.iter_rows(named=True)
    ]


def allowed_statuses(conflict_type: str) -> tuple[str, ...]:
    return MAPPING_STATUSES if conflict_type == UNMATCHED_TRACT else OUTCOME_STATUSES


# -- an unmatched tract beside the registry ---------------------------------------------------------
@dataclass(frozen=True)
class RegistryTract:
    tract_id: str
    parks_type: str
    clock: str
    treated: str
    draining_at_baseline: str
    record: str


@dataclass(frozen=True)
class SameVisit:
    """One visit or MRI timepoint: what the unmatched tract and each registry tract show."""

    visit: str
    cells: tuple[str, ...]
    """First the unmatched tract's, then one per registry tract (in ``RegistryComparison.tracts``
    order)."""


@dataclass(frozen=True)
class RegistryComparison:
    unmatched: str
    tracts: tuple[RegistryTract, ...]
    visits: tuple[SameVisit, ...]


def registry_tracts(tract_records: pl.DataFrame) -> list[RegistryTract]:
    """The subject's current registry tracts: Parks type and clock position of the external
    opening, treated, draining at baseline."""
    if tract_records.is_empty():
        return []
    live = current(tract_records.lazy(), schemas.contract("tract")).collect().sort("tract_id")
    return [
        RegistryTract(
            tract_id=r["tract_id"],
            parks_type=r["parks_type"],
            clock=f"{r['external_opening_clock']} o'clock",
            treated=text(r["treated"]),
            draining_at_baseline=text(r["draining_at_baseline"]),
            record=f"{shown_id(r, 'record_id')} v{r['record_version']}",
        )
        for r in live.iter_rows(named=True)
    ]


def _exam_cell(rows: pl.DataFrame) -> str:
    if rows.is_empty():
        return DASH
    return "; ".join(
        f"{r['external_opening']}, {'draining' if r['drains_on_compression'] else 'not draining'}"
        f", grade {text(r['discharge_grade'])} ({text(r['exam_date'])})"
        for r in rows.sort("exam_date").iter_rows(named=True)
    )


def _read_cell(rows: pl.DataFrame) -> str:
    if rows.is_empty():
        return DASH
    return "; ".join(
        f"{ROLE_LABEL.get(r['reader_role'], r['reader_role'])}: "
        f"{'T2+' if r['t2_hyperintense'] else 'no T2'}, collection {_collections(r['collection_mm'])}"
        for r in rows.sort("reader_role").iter_rows(named=True)
    )


def registry_comparison(
    unmatched: str,
    tract_records: pl.DataFrame,
    exams: pl.DataFrame,
    reads: pl.DataFrame,
    schedule: Sequence[str] = (),
) -> RegistryComparison:
    """The registry of an UNMATCHED_TRACT's subject, and at every visit or MRI timepoint where
    the unmatched tract has evidence, what each registry tract shows there (current records):
    the committee sees which tract the mis-keyed evidence most likely belongs to."""
    tracts = registry_tracts(tract_records)
    live_exams = current(exams.lazy(), schemas.contract("clinical_exam")).collect()
    live_reads = current(reads.lazy(), schemas.contract("mri_read")).collect()
    ids = [unmatched, *(t.tract_id for t in tracts)]
    rows = []
    seen = live_exams.filter(pl.col("tract_id") == unmatched)["visit"].unique().to_list()
    order = {v: i for i, v in enumerate(schedule)}
    for visit in sorted(seen, key=lambda v: (order.get(v, len(order)), v)):
        at = live_exams.filter(pl.col("visit") == visit)
        rows.append(
            SameVisit(visit, tuple(_exam_cell(at.filter(pl.col("tract_id") == t)) for t in ids))
        )
    for point in live_reads.filter(pl.col("tract_id") == unmatched)["timepoint"].unique().sort():
        at = live_reads.filter(pl.col("timepoint") == point)
        rows.append(
            SameVisit(point, tuple(_read_cell(at.filter(pl.col("tract_id") == t)) for t in ids))
        )
    return RegistryComparison(unmatched, tuple(tracts), tuple(rows))
