"""Synthetic trials at scale: the six transfer files of a random trial, for benchmarks.

Why: the scripted demo has 23 subjects; ingest throughput, adjudication time and lock size need
10^5 subjects. Every column is built vectorised with numpy and written by polars, so 100,000
subjects (about 3 million rows) take seconds, not minutes.

Shape of a trial: 1-3 treated tracts per subject (2 on average), 90% completers, about 60% of
completers' tracts closed (clinically closed from FU3, FU4 or FU5 on, healed on MRI), occasional
reader disagreements settled by an ADJ read. Completers have exams at INJ1, INJ2, INJ3 and
FU3..FU6, three injections, R1 and R2 reads at MRI_FINAL and pathology at INJ1 and INJ3;
withdrawn subjects stop after INJ2 and have baseline reads only. About 30 rows per subject in
all. The data are clean (no bad rows, no scripted conflicts), and the same seed gives the same
bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from services.demo.trial import (
    COORDINATORS,
    EXAMINERS,
    FILES,
    MIN_FU5_FU6_GAP,
    MRI_DAY,
    PATHOLOGIST,
    READERS,
    VISIT_DAY,
    VISITS,
    VOLUME_ML,
    columns,
)

P_COMPLETER = 0.9
P_CLOSED = 0.6
P_DISAGREE = 0.08  # completers' tracts whose primary readers disagree; an ADJ read follows
P_DISCHARGE_DROP = 0.3  # open tracts whose FU6 discharge grade is one lower than at INJ1
P_COLLECTION = 0.3  # active reads that also report a collection
TRACT_COUNTS = np.array([1, 2, 3])
TRACT_COUNT_P = (0.25, 0.5, 0.25)
FIRST_INJ1 = np.datetime64("2024-01-08", "D")
ENROLMENT_DAYS = 730
N_SITES = 5

EXAM_VISITS = np.array([0, 1, 2, 5, 6, 7, 8])  # indexes into VISITS: INJ1..INJ3, FU3..FU6
PATHOLOGY_VISITS = np.array([0, 2])  # INJ1, INJ3
CLOSES_AT = (5, 8)  # a closing tract closes at FU3, FU4 or FU5 (VISITS indexes, end excluded)
PARKS = (
    "SUPERFICIAL",
    "INTERSPHINCTERIC",
    "TRANSSPHINCTERIC",
    "SUPRASPHINCTERIC",
    "EXTRASPHINCTERIC",
)
REASONS = ("withdrew consent", "adverse event", "lost to follow-up", "protocol deviation")
ROLES = ("R1", "R2", "ADJ")


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Owner index and position within the owner, for owners repeated ``counts`` times each."""
    owner = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(len(owner)) - starts[owner]


def _text(values: tuple[str, ...], index: np.ndarray) -> pl.Series:
    """Categorical strings by index, without a numpy unicode array in between."""
    return pl.Series(values, dtype=pl.String).gather(index)


# Formatting expressions shared by the files.
def _date(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.String)


def _stamp(col: str, clock: str) -> pl.Expr:
    return pl.concat_str([pl.col(col).cast(pl.String), pl.lit(f"T{clock}Z")])


def _yn(col: str) -> pl.Expr:
    return pl.when(pl.col(col)).then(pl.lit("Y")).otherwise(pl.lit("N"))


def _id(prefix: str, *cols: str) -> pl.Expr:
    parts: list[pl.Expr] = [pl.lit(prefix)]
    for c in cols:
        parts += [pl.col(c), pl.lit("-")]
    return pl.concat_str(parts[:-1])


NULL = pl.lit(None, dtype=pl.String)


def _select(
    name: str, raw: pl.DataFrame, exprs: dict[str, pl.Expr | str | int | float]
) -> pl.DataFrame:
    """A file's frame in contract column order; a plain value is a constant column."""
    order = columns(name)
    if set(exprs) != set(order):
        raise ValueError(f"{name}: columns {sorted(set(exprs) ^ set(order))} differ from contract")
    return raw.select(
        [(e if isinstance(e, pl.Expr) else pl.lit(e)).alias(k) for k, e in exprs.items()]
    ).select(order)


def build_synthetic_frames(
    n_subjects: int, seed: int = 0, study: str = "SYN"
) -> dict[str, pl.DataFrame]:
    """The six files of a random trial as frames of transfer-format strings, by file name."""
    rng = np.random.default_rng(seed)
    n = n_subjects

    # Subjects: status, schedule with at most 3 days of jitter, FU5 -> FU6 at least 28 days.
    done = rng.random(n) < P_COMPLETER
    n_tracts = rng.choice(TRACT_COUNTS, size=n, p=TRACT_COUNT_P)
    day0 = FIRST_INJ1 + rng.integers(0, ENROLMENT_DAYS, n)
    jitter = rng.integers(-3, 4, size=(n, len(VISITS)))
    jitter[:, 0] = 0
    fu5, fu6 = VISITS.index("FU5"), VISITS.index("FU6")
    spare = VISIT_DAY["FU6"] - VISIT_DAY["FU5"] - MIN_FU5_FU6_GAP
    jitter[:, fu6] = np.maximum(jitter[:, fu6], jitter[:, fu5] - spare)
    visit_day = day0[:, None] + (np.array([VISIT_DAY[v] for v in VISITS]) + jitter)
    sid = pl.Series(np.arange(1, n + 1)).cast(pl.String).str.zfill(max(6, len(str(n))))
    sid = f"{study}-" + sid
    staff = rng.integers(0, len(COORDINATORS), n)
    examiner = rng.integers(0, len(EXAMINERS), n)
    withdrawn_day = day0 + 60 + rng.integers(5, 30, n)
    raw = pl.DataFrame(
        {
            "sid": sid,
            "done": done,
            "gone": withdrawn_day,
            "site": rng.integers(1, N_SITES + 1, n),
            "reason": _text(REASONS, rng.integers(0, len(REASONS), n)),
            "enrol": day0 - 21,
        }
    )
    subjects = _select(
        "subjects.csv",
        raw,
        {
            "record_id": _id("SUBJ-", "sid"),
            "record_version": 1,
            "subject_id": pl.col("sid"),
            "site_id": pl.concat_str([pl.lit("SITE"), pl.col("site").cast(pl.String).str.zfill(2)]),
            "enrolled_on": _date("enrol"),
            "status": pl.when("done").then(pl.lit("COMPLETED")).otherwise(pl.lit("WITHDRAWN")),
            "withdrawn_on": pl.when("done").then(NULL).otherwise(_date("gone")),
            "withdrawal_reason": pl.when("done").then(NULL).otherwise(pl.col("reason")),
            "entered_at": pl.when("done")
            .then(_stamp("enrol", "09:00:00"))
            .otherwise(_stamp("gone", "09:00:00")),
            "entered_by": "dm.synthetic",
            "change_reason": NULL,
            "deleted": "N",
        },
    )

    # Tracts: all treated; completers' tracts close with P_CLOSED.
    t_subj, t_pos = _expand(n_tracts)
    n_t = len(t_subj)
    t_done = done[t_subj]
    t_closed = t_done & (rng.random(n_t) < P_CLOSED)
    grade1 = rng.integers(1, 4, n_t)
    closes_at = rng.integers(*CLOSES_AT, n_t)
    fu6_grade = np.where(t_closed, 0, grade1 - (rng.random(n_t) < P_DISCHARGE_DROP))
    disagree = t_done & (rng.random(n_t) < P_DISAGREE)
    dissenter = rng.integers(0, 2, n_t)  # 0: R1, 1: R2 reads against the truth
    tract_id = "T" + pl.Series(t_pos + 1).cast(pl.String)
    raw = pl.DataFrame(
        {
            "sid": sid.gather(t_subj),
            "tid": tract_id,
            "parks": _text(PARKS, rng.integers(0, len(PARKS), n_t)),
            "clock": rng.integers(1, 13, n_t),
            "enrol": day0[t_subj] - 21,
        }
    )
    tracts = _select(
        "tracts.csv",
        raw,
        {
            "record_id": _id("TR-", "sid", "tid"),
            "record_version": 1,
            "subject_id": pl.col("sid"),
            "tract_id": pl.col("tid"),
            "parks_type": pl.col("parks"),
            "external_opening_clock": pl.col("clock"),
            "treated": "Y",
            "draining_at_baseline": "Y",
            "entered_at": _stamp("enrol", "11:00:00"),
            "entered_by": "dm.synthetic",
            "change_reason": NULL,
            "deleted": "N",
        },
    )

    def per_tract(rows_done: int, rows_gone: int) -> tuple[np.ndarray, np.ndarray, pl.DataFrame]:
        """Rows per tract (completer or withdrawn) with the tract's subject and tract ids."""
        tr, pos = _expand(np.where(t_done, rows_done, rows_gone))
        ids = pl.DataFrame({"sid": sid.gather(t_subj[tr]), "tid": tract_id.gather(tr)})
        return tr, pos, ids

    # Injections: INJ1..INJ3 for completers, INJ1 and INJ2 for withdrawn subjects.
    tr, pos, raw = per_tract(3, 2)
    raw = raw.with_columns(
        visit=_text(VISITS, pos),
        on=visit_day[t_subj[tr], pos],
        by=_text(COORDINATORS, staff[t_subj[tr]]),
    )
    injections = _select(
        "injections.csv",
        raw,
        {
            "record_id": _id("INJ-", "sid", "tid", "visit"),
            "record_version": 1,
            "subject_id": pl.col("sid"),
            "tract_id": pl.col("tid"),
            "visit": pl.col("visit"),
            "administered_on": _date("on"),
            "volume_ml": float(VOLUME_ML),
            "entered_at": _stamp("on", "15:00:00"),
            "entered_by": pl.col("by"),
            "change_reason": NULL,
            "deleted": "N",
        },
    )

    # Clinical exams: open and draining until the closing visit, then closed and dry.
    tr, pos, raw = per_tract(len(EXAM_VISITS), 2)
    visit = EXAM_VISITS[pos]
    shut = t_closed[tr] & (visit >= closes_at[tr])
    grade = np.where(shut, 0, np.where(visit == fu6, fu6_grade[tr], grade1[tr]))
    raw = raw.with_columns(
        visit=_text(VISITS, visit),
        on=visit_day[t_subj[tr], visit],
        shut=shut,
        grade=grade,
        examiner=_text(EXAMINERS, examiner[t_subj[tr]]),
        by=_text(COORDINATORS, staff[t_subj[tr]]),
    )
    exams = _select(
        "clinical_exams.csv",
        raw,
        {
            "record_id": _id("EX-", "sid", "tid", "visit"),
            "record_version": 1,
            "subject_id": pl.col("sid"),
            "tract_id": pl.col("tid"),
            "visit": pl.col("visit"),
            "exam_date": _date("on"),
            "examiner_id": pl.col("examiner"),
            "external_opening": pl.when("shut").then(pl.lit("CLOSED")).otherwise(pl.lit("OPEN")),
            "drains_on_compression": pl.when("shut").then(pl.lit("N")).otherwise(pl.lit("Y")),
            "discharge_grade": pl.col("grade"),
            "entered_at": _stamp("on", "17:30:00"),
            "entered_by": pl.col("by"),
            "change_reason": NULL,
            "deleted": "N",
        },
    )

    # MRI reads: R1 and R2 at MRI_FINAL for completers (plus ADJ where they disagree),
    # R1 and R2 at MRI_BL for withdrawn subjects.
    tr, role = _expand(np.where(disagree, 3, 2))
    final = t_done[tr]
    truth = t_closed[tr]
    dissent = disagree[tr] & (role == dissenter[tr])
    healed = final & (truth ^ dissent)
    n_r = len(tr)
    has_coll = ~healed & (rng.random(n_r) < P_COLLECTION)
    sizes = np.round(rng.uniform(8.0, 35.0, size=(n_r, 3)), 1)
    offset = np.where(final, MRI_DAY["MRI_FINAL"], MRI_DAY["MRI_BL"])
    scan = day0[t_subj[tr]] + offset
    raw = pl.DataFrame(
        {
            "sid": sid.gather(t_subj[tr]),
            "tid": tract_id.gather(tr),
            "tp": pl.Series(np.where(final, "MRI_FINAL", "MRI_BL")),
            "tag": pl.Series(np.where(final, "FINAL", "BL")),
            "role": _text(ROLES, role),
            "reader": _text(tuple(READERS[r] for r in ROLES), role),
            "healed": healed,
            "has_coll": has_coll,
            "c1": sizes[:, 0],
            "c2": sizes[:, 1],
            "c3": sizes[:, 2],
            "scan": scan,
            "read": scan + np.where(role == 2, 10, 3),
        }
    )
    reads = _select(
        "mri_reads.jsonl",
        raw,
        {
            "read_id": _id("RD-", "sid", "tid", "tag", "role"),
            "read_version": 1,
            "subject_id": pl.col("sid"),
            "tract_id": pl.col("tid"),
            "timepoint": pl.col("tp"),
            "scan_date": _date("scan"),
            "reader_id": pl.col("reader"),
            "reader_role": pl.col("role"),
            "image_quality": "ADEQUATE",
            "t2_hyperintense": ~pl.col("healed"),
            "fibrotic": pl.col("healed"),
            "contrast_given": pl.lit(True),
            "enhancement": ~pl.col("healed"),
            "collection_mm": pl.when("has_coll").then(pl.concat_list(["c1", "c2", "c3"])),
            "read_at": _stamp("read", "10:00:00"),
            "change_reason": NULL,
            "deleted": pl.lit(False),
        },
    )

    # Pathology at INJ1 and INJ3 (INJ1 only for withdrawn subjects): cells move towards
    # healing, fully for closing tracts and half as far for the others.
    tr, pos = _expand(np.where(t_done, len(PATHOLOGY_VISITS), 1))
    visit = PATHOLOGY_VISITS[pos]
    n_p = len(tr)
    moved = (visit == 2) * np.where(t_closed[tr], 1.0, 0.5)

    def cells(start: float, end: float, sd: float) -> np.ndarray:
        value = start + (end - start) * moved + rng.normal(0.0, sd, n_p)
        return np.round(np.maximum(value, 0.5), 1)

    on = visit_day[t_subj[tr], visit]
    raw = pl.DataFrame(
        {
            "sid": sid.gather(t_subj[tr]),
            "tid": tract_id.gather(tr),
            "visit": _text(VISITS, visit),
            "on": on,
            "reported": on + 7,
            "inflammation": np.where(visit == 0, rng.integers(2, 4, n_p), rng.integers(1, 3, n_p)),
            "fibrosis": rng.integers(1, 4, n_p),
            "cd68": cells(40.0, 20.0, 5.0),
            "cd20": cells(25.0, 12.0, 3.0),
            "cd31": cells(8.0, 14.0, 1.5),
        }
    )
    pathology = _select(
        "pathology.csv",
        raw,
        {
            "report_id": _id("PA-", "sid", "tid", "visit"),
            "report_version": 1,
            "subject_id": pl.col("sid"),
            "tract_id": pl.col("tid"),
            "visit": pl.col("visit"),
            "sample_id": _id("SMP-", "sid", "tid", "visit"),
            "collected_on": _date("on"),
            "reported_at": _stamp("reported", "10:00:00"),
            "pathologist_id": PATHOLOGIST,
            "specimen_adequate": "Y",
            "inflammation_grade": pl.col("inflammation"),
            "fibrosis_grade": pl.col("fibrosis"),
            "cd68_per_hpf": pl.col("cd68"),
            "cd20_per_hpf": pl.col("cd20"),
            "cd31_per_hpf": pl.col("cd31"),
            "change_reason": NULL,
            "deleted": "N",
        },
    )
    return {
        "subjects.csv": subjects,
        "tracts.csv": tracts,
        "injections.csv": injections,
        "clinical_exams.csv": exams,
        "mri_reads.jsonl": reads,
        "pathology.csv": pathology,
    }


def write_synthetic_trial(
    folder: Path, n_subjects: int, seed: int = 0, study: str = "SYN"
) -> dict[str, Path]:
    """Write the six transfer files of a random trial into ``folder``; paths by file name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = build_synthetic_frames(n_subjects, seed, study)
    out: dict[str, Path] = {}
    for name in FILES:
        out[name] = folder / name
        if name.endswith(".jsonl"):
            frames[name].write_ndjson(out[name])
        else:
            frames[name].write_csv(out[name])
    return out
