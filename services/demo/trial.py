"""The scripted demo trial: six transfer files whose adjudication reproduces the published results.

Why it exists: a correct platform fed these files, plus the committee decisions in
``DEMO_DECISIONS``, must print the protocol's table (23 enrolled, 20 completers, 12 full closure,
4 improved, 4 resistant, 30 of 43 treated tracts closed). Every edge case the ingest and the
adjudicator must handle (corrections, deletions, duplicates, bad rows, reader disagreement,
discordance, unmatched tracts, missing visits) is planted once, in a tract whose category it does
not change, so the demo doubles as an end-to-end acceptance test.

Everything is fixed: dates follow the protocol schedule with a seeded jitter of at most 3 days,
and the pathology values come from a seeded numpy Generator, so the files are byte-identical on
every run.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

import schemas

DEMO_STUDY = "DEMO"
SEED = 20240108

FILES = (
    "subjects.csv",
    "tracts.csv",
    "injections.csv",
    "clinical_exams.csv",
    "mri_reads.jsonl",
    "pathology.csv",
)


def columns(name: str) -> tuple[str, ...]:
    """A file's header: its contract's field order, the one source of truth for columns."""
    return schemas.source_contracts()[name].columns


# Protocol schedule (PROTOCOL.md): study day of each visit, INJ1 = day 0.
VISITS = ("INJ1", "INJ2", "INJ3", "FU1", "FU2", "FU3", "FU4", "FU5", "FU6")
VISIT_DAY = dict(zip(VISITS, (0, 60, 120, 150, 180, 210, 240, 270, 300), strict=True))
INJECTION_VISITS = VISITS[:3]
MRI_DAY = {"MRI_BL": -14, "MRI_FINAL": 300}
ENROL_DAY = -21
WITHDRAWAL_DAY = 75
FIRST_INJ1 = date(2024, 1, 8)  # S01's day 0; one subject a week, S23 on 2024-06-10.
MAX_JITTER = 3
MIN_FU5_FU6_GAP = 28

SITE = "SITE01"
EXAMINERS = ("EXAM-1", "EXAM-2", "EXAM-3")
COORDINATORS = ("crc.jones", "crc.okafor")
DATA_MANAGER = "dm.lindqvist"
READERS = {"R1": "RAD-A", "R2": "RAD-B", "ADJ": "RAD-C"}
PATHOLOGIST = "PATH-1"
VOLUME_ML = "5.0"
PARKS_TYPES = ("SUPERFICIAL", "INTERSPHINCTERIC", "TRANSSPHINCTERIC", "SUPRASPHINCTERIC")

# (external_opening, drains_on_compression, discharge_grade) of one exam.
Exam = tuple[str, str, int]
CLOSED_DRY: Exam = ("CLOSED", "N", 0)


@dataclass(frozen=True)
class ScriptedDecision:
    """A committee decision the demo records on one of the conflicts its data raise."""

    conflict_type: str
    subject_id: str
    tract_id: str
    status: str
    rationale: str
    members: tuple[str, ...]
    maps_to: str | None = None


DEMO_DECISIONS: tuple[ScriptedDecision, ...] = (
    ScriptedDecision(
        "READER_DISAGREEMENT",
        "S05",
        "T2",
        "CLOSED",
        "R2's T2 signal is a thin linear hyperintensity along the injected track, in keeping with "
        "post-procedural granulation tissue; no fluid-filled tract and no collection on review. "
        "R1 reads healed and the tract was closed and dry at FU5 and FU6: healed.",
        ("dr.ahmadi", "dr.sato", "dr.novak"),
    ),
    ScriptedDecision(
        "CLINICAL_MRI_DISCORDANCE",
        "S13",
        "T3",
        "NOT_CLOSED",
        "External opening re-epithelialised and dry at FU5 and FU6, but both readers report a "
        "persistent T2-hyperintense tract with a 25 x 22 x 10 mm collection: the skin has closed "
        "over an active tract with abscess risk. Not healed.",
        ("dr.ahmadi", "dr.sato", "dr.novak"),
    ),
    ScriptedDecision(
        "UNMATCHED_TRACT",
        "S09",
        "T1X",
        "MAPPED",
        "Data-entry typo: the 'T1X' exam at FU2 has the same date, examiner and findings as the "
        "T1 exam of that visit, and S09 has a single treated tract at that position.",
        ("dr.sato", "dr.novak"),
        maps_to="T1",
    ),
    ScriptedDecision(
        "UNMATCHED_TRACT",
        "S10",
        "T9",
        "NEW_TRACT",
        "New draining external opening first seen at FU4, absent from the baseline registry and "
        "from the baseline MRI: a new fistula, reported as an adverse event and kept out of "
        "every denominator.",
        ("dr.ahmadi", "dr.novak"),
    ),
    ScriptedDecision(
        "MISSING_ASSESSMENT",
        "S11",
        "T1",
        "CLOSED",
        "FU5 visit missed (patient abroad). Closed and dry at FU4 and FU6, more than 28 days "
        "apart, and both readers report a healed tract at MRI_FINAL: closure is sustained.",
        ("dr.ahmadi", "dr.sato", "dr.novak"),
    ),
    ScriptedDecision(
        "CLINICAL_MRI_DISCORDANCE",
        "S14",
        "T3",
        "NOT_CLOSED",
        "Open and draining at FU5, closed only at FU6: closure is not sustained over two visits "
        "as the protocol requires, and a healed MRI does not replace the missing confirmation.",
        ("dr.sato", "dr.novak"),
    ),
    ScriptedDecision(
        "INCONSISTENT_EXAM",
        "S12",
        "T1",
        "CLOSED",
        "The FU3 entry (opening closed yet draining) is an isolated interim finding; closed and "
        "dry at FU4, FU5 and FU6 with a healed MRI. The FU3 entry does not affect the outcome.",
        ("dr.ahmadi", "dr.sato"),
    ),
)

# The conflicts the demo data are designed to raise, one per scripted decision, and no others.
EXPECTED_CONFLICTS: tuple[tuple[str, str, str], ...] = tuple(
    (d.conflict_type, d.subject_id, d.tract_id) for d in DEMO_DECISIONS
)

EXPECTED = {
    "enrolled": 23,
    "completers": 20,
    "FULL_CLOSURE": 12,
    "IMPROVED": 4,
    "RESISTANT": 4,
    "treated_tracts": 43,
    "closed_tracts": 30,
}


@dataclass(frozen=True)
class _Read:
    """One planned MRI read; healed when t2 is false and no collection counts."""

    t2: bool
    collection: tuple[float, float, float] | None = None
    quality: str = "ADEQUATE"


HEALED = _Read(t2=False)
ACTIVE = _Read(t2=True)


@dataclass
class _Tract:
    """A tract's script: its exams by visit (a missing visit has no exam) and final MRI reads."""

    tract_id: str
    closed: bool = False
    treated: bool = True
    course: dict[str, Exam] = field(default_factory=dict)
    final: dict[str, _Read] = field(default_factory=dict)


@dataclass
class _Subject:
    subject_id: str
    index: int
    tracts: list[_Tract]
    withdrawal: str | None = None  # the reason, when withdrawn
    dates: dict[str, date] = field(default_factory=dict)

    @property
    def withdrawn(self) -> bool:
        return self.withdrawal is not None

    @property
    def visits(self) -> tuple[str, ...]:
        return VISITS[:2] if self.withdrawn else VISITS

    def tract(self, tract_id: str) -> _Tract:
        return next(t for t in self.tracts if t.tract_id == tract_id)


def _closing(grade: int, closes_at: str) -> dict[str, Exam]:
    """Open and draining until ``closes_at``, closed and dry from then on."""
    first = VISITS.index(closes_at)
    course: dict[str, Exam] = {}
    for i, visit in enumerate(VISITS):
        if i >= first:
            course[visit] = CLOSED_DRY
        else:
            course[visit] = ("OPEN", "Y", grade if i < 3 else max(grade - 1, 1))
    return course


def _draining(grades: list[int]) -> dict[str, Exam]:
    """Open and draining at every visit, with the given discharge grade per visit."""
    return {v: ("OPEN", "Y", g) for v, g in zip(VISITS, grades, strict=True)}


def _plan(rng: np.random.Generator) -> list[_Subject]:
    """Every subject's script: categories first, then the edge cases layered on top."""

    def closed(tract_id: str) -> _Tract:
        grade = int(rng.integers(2, 4))
        closes_at = VISITS[int(rng.integers(3, 7))]  # FU1..FU4
        final = {"R1": HEALED, "R2": HEALED}
        return _Tract(tract_id, closed=True, course=_closing(grade, closes_at), final=final)

    def open_(tract_id: str) -> _Tract:
        g = int(rng.integers(1, 4))
        return _Tract(tract_id, course=_draining([g] * 9), final={"R1": ACTIVE, "R2": ACTIVE})

    def untreated(tract_id: str) -> _Tract:
        return _Tract(tract_id, treated=False)

    subjects: list[_Subject] = []
    full_closure_counts = (1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3)
    for i, n in enumerate(full_closure_counts, start=1):
        tracts = [closed(f"T{k}") for k in range(1, n + 1)]
        if i == 1:
            tracts.append(untreated("T2"))
        subjects.append(_Subject(f"S{i:02d}", i, tracts))
    for i in (13, 14, 15):  # IMPROVED: two of three tracts closed
        subjects.append(_Subject(f"S{i:02d}", i, [closed("T1"), closed("T2"), open_("T3")]))
    # IMPROVED by discharge alone: T1 goes from grade 3 to 1 while still draining.
    s16_t1 = _Tract("T1", course=_draining([3, 3, 3, 2, 2, 2, 1, 1, 1]))
    s16_t1.final = {"R1": ACTIVE, "R2": ACTIVE}
    subjects.append(_Subject("S16", 16, [s16_t1, open_("T2")]))
    for i in (17, 18, 19, 20):  # RESISTANT
        tracts = [open_("T1"), open_("T2")]
        if i == 17:
            tracts.append(untreated("T3"))
        subjects.append(_Subject(f"S{i:02d}", i, tracts))
    withdrawals = {  # subject: (treated tracts, reason)
        21: (2, "withdrew consent"),
        22: (1, "adverse event: perianal abscess requiring surgical drainage"),
        23: (2, "relocated abroad; lost to follow-up"),
    }
    for i, (n, reason) in withdrawals.items():
        tracts = []
        for k in range(1, n + 1):
            g = int(rng.integers(2, 4))
            tracts.append(
                _Tract(f"T{k}", course={"INJ1": ("OPEN", "Y", g), "INJ2": ("OPEN", "Y", g)})
            )
        subjects.append(_Subject(f"S{i}", i, tracts, withdrawal=reason))

    by_id = {s.subject_id: s for s in subjects}
    for s in subjects:
        s.dates = _schedule(s.index, rng)

    def t(subject_id: str, tract_id: str) -> _Tract:
        return by_id[subject_id].tract(tract_id)

    # 5. Readers disagree, ADJ says healed.
    t("S04", "T1").final = {"R1": HEALED, "R2": ACTIVE, "ADJ": HEALED}
    # 6. Readers disagree, ADJ says not healed (tract not closed anyway).
    t("S17", "T1").final = {"R1": HEALED, "R2": ACTIVE, "ADJ": ACTIVE}
    # 7. Readers disagree and no ADJ read: READER_DISAGREEMENT.
    t("S05", "T2").final = {"R1": HEALED, "R2": ACTIVE}
    # 8. Clinically closed, MRI active with a collection: CLINICAL_MRI_DISCORDANCE.
    s13 = t("S13", "T3")
    s13.course = _closing(2, "FU4")
    s13.final = {"R1": _Read(True, (25.0, 22.0, 10.0)), "R2": _Read(True, (25.0, 22.0, 10.0))}
    # 9. A collection of exactly 20 mm does not count (larger than 20 counts).
    t("S06", "T1").final = {r: _Read(False, (20.0, 20.0, 5.0)) for r in ("R1", "R2")}
    # 10. Larger than 20 mm in one dimension only does not count.
    t("S07", "T1").final = {r: _Read(False, (25.0, 10.0, 8.0)) for r in ("R1", "R2")}
    # 11. R2 not evaluable; the ADJ read decides.
    t("S08", "T1").final = {"R1": HEALED, "R2": _Read(False, quality="INADEQUATE"), "ADJ": HEALED}
    # 14. FU5 never happened: MISSING_ASSESSMENT.
    t("S11", "T1").course.pop("FU5")
    # 15. Closed at FU6 only, MRI healed: not sustained, CLINICAL_MRI_DISCORDANCE.
    s14 = t("S14", "T3")
    s14.course = _draining([0, 0, 0, 0, 0, 0, 0, 1, 0])
    s14.course["FU6"] = CLOSED_DRY
    s14.final = {"R1": HEALED, "R2": HEALED}
    # 16. Opening closed yet draining at FU3: INCONSISTENT_EXAM.
    s12 = t("S12", "T1")
    s12.course = _closing(2, "FU3")
    s12.course["FU3"] = ("CLOSED", "Y", 1)
    # Withdrawn S22 has the same contradiction, which must raise nothing.
    s22 = t("S22", "T1")
    s22.course["INJ2"] = ("CLOSED", "Y", 1)
    return subjects


def _schedule(index: int, rng: np.random.Generator) -> dict[str, date]:
    """Visit and scan dates of one subject: the protocol day plus at most 3 days of jitter."""
    day0 = FIRST_INJ1 + timedelta(days=7 * (index - 1))
    offsets = {"INJ1": 0}  # day 0 defines the schedule
    for v in VISITS[1:]:
        offsets[v] = VISIT_DAY[v] + int(rng.integers(-MAX_JITTER, MAX_JITTER + 1))
    offsets["FU6"] = max(offsets["FU6"], offsets["FU5"] + MIN_FU5_FU6_GAP)
    dates = {v: day0 + timedelta(days=d) for v, d in offsets.items()}
    dates["ENROL"] = day0 + timedelta(days=ENROL_DAY)
    dates["WITHDRAWN"] = day0 + timedelta(days=WITHDRAWAL_DAY)
    dates.update({tp: day0 + timedelta(days=d) for tp, d in MRI_DAY.items()})
    return dates


def _ts(day: date, clock: str, days_later: int = 0) -> str:
    return f"{(day + timedelta(days=days_later)).isoformat()}T{clock}Z"


def _yn(flag: bool) -> str:
    return "Y" if flag else "N"


def _subject_rows(s: _Subject) -> list[dict[str, Any]]:
    d = s.dates
    base = {
        "record_id": f"SUBJ-{s.subject_id}",
        "record_version": 1,
        "subject_id": s.subject_id,
        "site_id": SITE,
        "enrolled_on": d["ENROL"].isoformat(),
        "status": "COMPLETED",
        "withdrawn_on": "",
        "withdrawal_reason": "",
        "entered_at": _ts(d["ENROL"], "09:00:00"),
        "entered_by": DATA_MANAGER,
        "change_reason": "",
        "deleted": "N",
    }
    if s.withdrawal is not None:
        return [
            base
            | {
                "status": "WITHDRAWN",
                "withdrawn_on": d["WITHDRAWN"].isoformat(),
                "withdrawal_reason": s.withdrawal,
                "entered_at": _ts(d["WITHDRAWN"], "09:00:00"),
            }
        ]
    if s.subject_id == "S20":  # 17. Status corrected by a second version.
        return [
            base | {"status": "ENROLLED"},
            base
            | {
                "record_version": 2,
                "entered_at": _ts(d["FU6"], "09:00:00", 1),
                "change_reason": "final visit completed",
            },
        ]
    return [base]


def _tract_rows(s: _Subject, rng: np.random.Generator) -> list[dict[str, Any]]:
    return [
        {
            "record_id": f"TR-{s.subject_id}-{t.tract_id}",
            "record_version": 1,
            "subject_id": s.subject_id,
            "tract_id": t.tract_id,
            "parks_type": PARKS_TYPES[int(rng.integers(0, len(PARKS_TYPES)))],
            "external_opening_clock": int(rng.integers(1, 13)),
            "treated": _yn(t.treated),
            "draining_at_baseline": _yn(t.treated),
            "entered_at": _ts(s.dates["ENROL"], "11:00:00"),
            "entered_by": DATA_MANAGER,
            "change_reason": "",
            "deleted": "N",
        }
        for t in s.tracts
    ]


def _coordinator(s: _Subject) -> str:
    return COORDINATORS[s.index % len(COORDINATORS)]


def _injection_rows(s: _Subject) -> list[dict[str, Any]]:
    rows = []
    for t in s.tracts:
        if not t.treated:
            continue
        for visit in INJECTION_VISITS:
            if visit not in s.visits:
                continue
            rows.append(
                {
                    "record_id": f"INJ-{s.subject_id}-{t.tract_id}-{visit}",
                    "record_version": 1,
                    "subject_id": s.subject_id,
                    "tract_id": t.tract_id,
                    "visit": visit,
                    "administered_on": s.dates[visit].isoformat(),
                    "volume_ml": VOLUME_ML,
                    "entered_at": _ts(s.dates[visit], "15:00:00"),
                    "entered_by": _coordinator(s),
                    "change_reason": "",
                    "deleted": "N",
                }
            )
    return rows


def _exam(s: _Subject, tract_id: str, visit: str, exam: Exam, /, **extra: Any) -> dict[str, Any]:
    opening, drains, grade = exam
    row = {
        "record_id": f"EX-{s.subject_id}-{tract_id}-{visit}",
        "record_version": 1,
        "subject_id": s.subject_id,
        "tract_id": tract_id,
        "visit": visit,
        "exam_date": s.dates[visit].isoformat(),
        "examiner_id": EXAMINERS[s.index % 3],
        "external_opening": opening,
        "drains_on_compression": drains,
        "discharge_grade": grade,
        "entered_at": _ts(s.dates[visit], "17:30:00"),
        "entered_by": _coordinator(s),
        "change_reason": "",
        "deleted": "N",
    }
    return row | extra


def _exam_rows(s: _Subject) -> list[dict[str, Any]]:
    """Each tract's exams in visit order, with the scripted extra versions and copies in place."""
    rows: list[dict[str, Any]] = []
    for t in s.tracts:
        for visit, exam in t.course.items():
            row = _exam(s, t.tract_id, visit, exam)
            key = (s.subject_id, t.tract_id, visit)
            fixed = {
                "record_version": 2,
                "entered_at": _ts(s.dates[visit], "09:15:00", 12),
                "change_reason": "transcription error corrected against source notes",
            }
            if key == ("S02", "T1", "FU6"):  # 1. Correction: v1 wrong, v2 right, in order.
                rows += [_exam(s, t.tract_id, visit, ("OPEN", "Y", 2)), row | fixed]
            elif key == ("S03", "T1", "FU6"):  # 1. The lower version arrives late.
                wrong = _exam(s, t.tract_id, visit, ("OPEN", "Y", t.course["INJ1"][2]))
                rows += [row | fixed, wrong]
            elif key == ("S04", "T1", "FU2"):  # 2. Entered twice, the copy then deleted.
                dup = row | {
                    "record_id": "EX-S04-T1-FU2-DUP",
                    "entered_at": _ts(s.dates[visit], "17:45:00"),
                }
                gone = dup | {
                    "record_version": 2,
                    "entered_at": _ts(s.dates[visit], "10:00:00", 5),
                    "change_reason": "entered twice",
                    "deleted": "Y",
                }
                rows += [row, dup, gone]
            elif key == ("S05", "T1", "INJ1"):  # 3. The same line twice.
                rows += [row, dict(row)]
            else:
                rows.append(row)
    if s.subject_id == "S09":  # 12. Tract id typo: a copy of T1's FU2 exam filed under T1X.
        rows.append(_exam(s, "T1X", "FU2", s.tract("T1").course["FU2"]))
    if s.subject_id == "S10":  # 13. A new fistula, not in the registry.
        rows.append(_exam(s, "T9", "FU4", ("OPEN", "Y", 1)))
    return rows


def _bad_exam_rows(by_id: dict[str, _Subject]) -> list[dict[str, Any]]:
    """4. Rows the ingest must reject, one reason each; otherwise copies of real exams."""

    def real(subject_id: str, tract_id: str, visit: str, /, **extra: Any) -> dict[str, Any]:
        s = by_id[subject_id]
        return _exam(s, tract_id, visit, s.tract(tract_id).course[visit], **extra)

    s07_fu1 = real("S07", "T1", "FU1")
    flipped: Exam = (
        ("CLOSED", "N", 0) if s07_fu1["external_opening"] == "OPEN" else ("OPEN", "Y", 2)
    )
    s08 = by_id["S08"]
    return [
        real("S06", "T2", "FU2", record_id="EX-BAD-GRADE7", discharge_grade=7),
        real("S07", "T2", "FU2", record_id="EX-BAD-DATE", exam_date="2024-13-01"),
        real(
            "S08",
            "T2",
            "FU6",
            record_id="EX-BAD-VISIT",
            visit="FU7",
            exam_date=(s08.dates["FU6"] + timedelta(days=30)).isoformat(),
            entered_at=_ts(s08.dates["FU6"], "17:30:00", 30),
        ),
        real("S09", "T2", "FU3", record_id="EX-BAD-EXAMINER", examiner_id=""),
        real(
            "S06",
            "T1",
            "FU1",
            record_version=2,
            entered_at=_ts(by_id["S06"].dates["FU1"], "09:00:00", 3),
        ),
        _exam(by_id["S07"], "T1", "FU1", flipped),
    ]


def _read(s: _Subject, t: _Tract, timepoint: str, role: str, read: _Read) -> dict[str, Any]:
    scan = s.dates[timepoint]
    tag = "BL" if timepoint == "MRI_BL" else "FINAL"
    evaluable = read.quality == "ADEQUATE"
    late = 10 if role == "ADJ" else 3
    return {
        "read_id": f"RD-{s.subject_id}-{t.tract_id}-{tag}-{role}",
        "read_version": 1,
        "subject_id": s.subject_id,
        "tract_id": t.tract_id,
        "timepoint": timepoint,
        "scan_date": scan.isoformat(),
        "reader_id": READERS[role],
        "reader_role": role,
        "image_quality": read.quality,
        "t2_hyperintense": read.t2,
        "fibrotic": (not read.t2) if evaluable else None,
        "contrast_given": True,
        "enhancement": read.t2 if evaluable else None,
        "collection_mm": list(read.collection) if read.collection else None,
        "read_at": _ts(scan, "10:00:00" if role != "ADJ" else "15:00:00", late),
        "change_reason": None,
        "deleted": False,
    }


def _read_rows(s: _Subject, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = []
    for t in s.tracts:
        # Baseline: every tract active; some with a collection, both readers alike.
        size = float(rng.integers(12, 30))
        coll = (size, float(round(size * 0.8)), 10.0) if rng.random() < 0.4 else None
        for role in ("R1", "R2"):
            rows.append(_read(s, t, "MRI_BL", role, _Read(True, coll)))
        if not s.withdrawn and t.treated:
            for role, read in t.final.items():
                rows.append(_read(s, t, "MRI_FINAL", role, read))
    return rows


def _bad_read_rows(by_id: dict[str, _Subject]) -> list[dict[str, Any]]:
    s09, s10 = by_id["S09"], by_id["S10"]
    neg = _read(s09, s09.tract("T2"), "MRI_FINAL", "R1", _Read(False, (-3.0, 10.0, 10.0)))
    r3 = _read(s10, s10.tract("T1"), "MRI_FINAL", "ADJ", HEALED)
    return [
        neg | {"read_id": "RD-BAD-NEGSIZE"},
        r3 | {"read_id": "RD-BAD-ROLE", "reader_role": "R3"},
    ]


# Pathology means at INJ1, INJ2, INJ3 for a responding tract, with their noise (SD);
# a tract that does not close moves half as far.
MARKERS = {
    "cd68_per_hpf": ((40.0, 30.0, 20.0), 4.0),  # macrophages fall
    "cd20_per_hpf": ((25.0, 18.0, 12.0), 2.5),  # B cells fall
    "cd31_per_hpf": ((8.0, 11.0, 14.0), 1.0),  # microvessels rise
}


def _pathology_rows(s: _Subject, rng: np.random.Generator) -> list[dict[str, Any]]:
    """One report per treated tract per injection visit, trending as the published biopsies."""
    rows = []
    for t in s.tracts:
        if not t.treated:
            continue
        effect = 1.0 if t.closed else 0.5
        level = {m: rng.normal(0.0, sd) for m, (_, sd) in MARKERS.items()}  # the tract's own
        infl1, infl3 = int(rng.integers(2, 4)), int(rng.integers(1, 3))
        inflammation = (infl1, int(rng.integers(infl3, infl1 + 1)), infl3)
        fib1 = int(rng.integers(1, 3))
        fib2 = min(3, fib1 + int(rng.integers(0, 2)))
        fibrosis = (fib1, fib2, min(3, fib2 + int(rng.integers(0, 2))))
        for k, visit in enumerate(INJECTION_VISITS):
            if visit not in s.visits:
                continue
            cells = {}
            for marker, (means, sd) in MARKERS.items():
                mean = means[0] + (means[k] - means[0]) * effect
                cells[marker] = round(max(0.5, mean + level[marker] + rng.normal(0.0, sd / 2)), 1)
            day = s.dates[visit]
            rows.append(
                {
                    "report_id": f"PA-{s.subject_id}-{t.tract_id}-{visit}",
                    "report_version": 1,
                    "subject_id": s.subject_id,
                    "tract_id": t.tract_id,
                    "visit": visit,
                    "sample_id": f"SMP-{s.subject_id}-{t.tract_id}-{visit}",
                    "collected_on": day.isoformat(),
                    "reported_at": _ts(day, "10:00:00", 7),
                    "pathologist_id": PATHOLOGIST,
                    "specimen_adequate": "Y",
                    "inflammation_grade": inflammation[k],
                    "fibrosis_grade": fibrosis[k],
                    **cells,
                    "change_reason": "",
                    "deleted": "N",
                }
            )
    return rows


def _bad_pathology_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    real = next(r for r in rows if r["report_id"] == "PA-S11-T1-INJ2")
    return [real | {"report_id": "PA-BAD-INFL5", "inflammation_grade": 5}]


def _bad_tract_rows(by_id: dict[str, _Subject]) -> list[dict[str, Any]]:
    s03 = by_id["S03"]
    return [
        {
            "record_id": "TR-BAD-CLOCK13",
            "record_version": 1,
            "subject_id": "S03",
            "tract_id": "T3",
            "parks_type": "SUPERFICIAL",
            "external_opening_clock": 13,
            "treated": "N",
            "draining_at_baseline": "N",
            "entered_at": _ts(s03.dates["ENROL"], "11:05:00"),
            "entered_by": DATA_MANAGER,
            "change_reason": "",
            "deleted": "N",
        }
    ]


def build_demo_rows() -> dict[str, list[dict[str, Any]]]:
    """Every row of the six files, in file order, keyed by file name (for tests and writers)."""
    rng = np.random.default_rng([SEED, 0])
    subjects = _plan(rng)
    by_id = {s.subject_id: s for s in subjects}
    registry_rng = np.random.default_rng([SEED, 1])
    mri_rng = np.random.default_rng([SEED, 2])
    path_rng = np.random.default_rng([SEED, 3])
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in FILES}
    for s in subjects:
        rows["subjects.csv"] += _subject_rows(s)
        rows["tracts.csv"] += _tract_rows(s, registry_rng)
        rows["injections.csv"] += _injection_rows(s)
        rows["clinical_exams.csv"] += _exam_rows(s)
        rows["mri_reads.jsonl"] += _read_rows(s, mri_rng)
        rows["pathology.csv"] += _pathology_rows(s, path_rng)
    rows["tracts.csv"] += _bad_tract_rows(by_id)
    rows["clinical_exams.csv"] += _bad_exam_rows(by_id)
    rows["mri_reads.jsonl"] += _bad_read_rows(by_id)
    rows["pathology.csv"] += _bad_pathology_rows(rows["pathology.csv"])
    return rows


def _check(name: str, rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """Every row must carry exactly the contract's fields, so nothing is silently left empty."""
    cols = columns(name)
    for row in rows:
        if set(row) != set(cols):
            raise ValueError(f"{name}: row {row.get(cols[0])} fields differ from the contract")
    return cols


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    cols = _check(path.name, rows)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    cols = _check(path.name, rows)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            ordered = {c: row[c] for c in cols}
            fh.write(json.dumps(ordered, separators=(",", ":"), ensure_ascii=False) + "\n")


def write_demo_trial(folder: Path) -> dict[str, Path]:
    """Write the six demo transfer files into ``folder``; returns their paths by file name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, rows in build_demo_rows().items():
        out[name] = folder / name
        (_write_jsonl if name.endswith(".jsonl") else _write_csv)(out[name], rows)
    return out
