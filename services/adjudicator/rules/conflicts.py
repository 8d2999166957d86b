"""Conflict detection: every condition of PROTOCOL.md that needs the committee, with stable ids.

A conflict's id depends only on what it is about (study, type, subject, tract, visit or side),
so the same inputs give the same id; its fingerprint is the ids of the events behind it, so a
change of inputs after a decision is visible and reopens it.

Scope (one for every type): conflicts concern subjects who are not withdrawn. Those about a
tract's outcome (every type here but UNMATCHED_TRACT and the registry's) concern treated
tracts only: an untreated tract has no outcome in any denominator, so nothing about it needs
the committee. Identity conflicts (UNMATCHED_TRACT, and DUPLICATE_REGISTRATION and
UNKNOWN_SUBJECT of ``rules/registry.py``) concern every tract and subject, since they decide
what is registered and treated. MISSING_ASSESSMENT waits until the subject has COMPLETED.
"""

from __future__ import annotations

import polars as pl

from services.adjudicator.rules import TRACT_KEY
from services.adjudicator.rules.registry import DUPLICATE_REGISTRATION, UNKNOWN_SUBJECT
from services.adjudicator.rules.schedule import windows
from services.adjudicator.ruleset import RuleSet
from services.events import digest

UNMATCHED_TRACT = "UNMATCHED_TRACT"
INCONSISTENT_EXAM = "INCONSISTENT_EXAM"
MISSING_ASSESSMENT = "MISSING_ASSESSMENT"
READER_DISAGREEMENT = "READER_DISAGREEMENT"
CLINICAL_MRI_DISCORDANCE = "CLINICAL_MRI_DISCORDANCE"
OUT_OF_WINDOW = "OUT_OF_WINDOW"
VISIT_ORDER = "VISIT_ORDER"
READER_NOT_INDEPENDENT = "READER_NOT_INDEPENDENT"
TYPES = (
    UNMATCHED_TRACT,
    INCONSISTENT_EXAM,
    MISSING_ASSESSMENT,
    READER_DISAGREEMENT,
    CLINICAL_MRI_DISCORDANCE,
    OUT_OF_WINDOW,
    VISIT_ORDER,
    READER_NOT_INDEPENDENT,
    DUPLICATE_REGISTRATION,
    UNKNOWN_SUBJECT,
)

CONFLICT_SCHEMA = pl.Schema(
    {
        "type": pl.String(),
        "subject_id": pl.String(),
        "tract_id": pl.String(),
        "about": pl.String(),
        "detail": pl.String(),
        "event_ids": pl.List(pl.String()),
    }
)
KEY = ("type", "subject_id", "tract_id", "about")


def _rows(
    frame: pl.LazyFrame,
    kind: str,
    about: pl.Expr,
    detail: pl.Expr,
    visits: list[str] | pl.Expr,
    reads: bool,
) -> pl.LazyFrame:
    """Conflict rows with the evidence behind them: exams at ``visits``, final reads if ``reads``."""
    return frame.select(
        type=pl.lit(kind),
        subject_id="subject_id",
        tract_id="tract_id",
        about=about,
        detail=detail,
        input_visits=visits
        if isinstance(visits, pl.Expr)
        else pl.lit(visits, dtype=pl.List(pl.String)),
        input_reads=pl.lit(reads),
    )


def outside_registry(evidence: dict[str, pl.LazyFrame], tracts: pl.LazyFrame) -> pl.LazyFrame:
    """Evidence rows (exams, reads, reports, injections: label -> frame) whose subject and
    tract are not in the registry: ``subject_id``, ``tract_id``, ``event_id``, ``source``.
    Few rows: the raw material of UNMATCHED_TRACT and UNKNOWN_SUBJECT."""
    seen = pl.concat(
        [
            frame.select(*TRACT_KEY, "event_id", source=pl.lit(label))
            for label, frame in evidence.items()
        ]
    )
    return seen.join(tracts.select(TRACT_KEY), on=TRACT_KEY, how="anti")


def unmatched_tracts(outside: pl.LazyFrame, active: pl.LazyFrame) -> pl.LazyFrame:
    """Tract ids in exams, reads, reports or injections that are not in the subject's registry
    (``outside``: :func:`outside_registry`). ``active`` lists the subjects conflicts may
    concern (not withdrawn; a subject without a subject record is UNKNOWN_SUBJECT instead)."""
    unmatched = (
        outside.join(active, on="subject_id", how="semi")
        .group_by(TRACT_KEY)
        .agg(event_ids=pl.col("event_id").unique().sort(), sources=pl.col("source").unique().sort())
    )
    return unmatched.select(
        type=pl.lit(UNMATCHED_TRACT),
        subject_id="subject_id",
        tract_id="tract_id",
        about=pl.lit("registry"),
        detail=pl.lit("tract ")
        + pl.col("tract_id")
        + pl.lit(" is not in the registry of ")
        + pl.col("subject_id")
        + pl.lit(" (seen in ")
        + pl.col("sources").list.join(", ")
        + pl.lit(")"),
        event_ids="event_ids",
    )


def outcome_conflicts(visits: pl.LazyFrame, tracts: pl.LazyFrame, rules: RuleSet) -> pl.LazyFrame:
    """The conflicts about a tract's outcome, from the per-visit and per-tract frames of the
    rules, each with the inputs behind it (``input_visits``, ``input_reads``) for
    :func:`with_event_ids`.

    ``visits`` needs the clinical visit status; ``tracts`` the per-tract frame with ``active``,
    ``completed`` and ``treated``.
    """
    confirm = list(rules.confirmation_visits)
    assessed = tracts.filter(pl.col("active") & pl.col("treated"))
    completed = assessed.filter(pl.col("completed"))
    inconsistent = _rows(
        visits.filter("inconsistent").join(assessed.select(TRACT_KEY), on=TRACT_KEY, how="semi"),
        INCONSISTENT_EXAM,
        pl.col("visit"),
        pl.col("inconsistency") + pl.lit(" at ") + pl.col("visit"),
        pl.concat_list(pl.col("visit")),
        reads=False,
    )
    fu6_closed = pl.col("fu6_closed").fill_null(False)
    missing_clinical = _rows(
        completed.filter(
            ~pl.col("fu6_present") | (fu6_closed & pl.col("missing_visits").is_not_null())
        ),
        MISSING_ASSESSMENT,
        pl.lit("clinical"),
        pl.lit("clinical assessment missing: ")
        + pl.when(pl.col("fu6_present"))
        .then(pl.lit("missing: ") + pl.col("missing_visits"))
        .otherwise(pl.lit(f"{rules.primary_visit} missing")),
        confirm,
        reads=False,
    )
    missing_mri = _rows(
        completed.filter(pl.col("missing_reads")),
        MISSING_ASSESSMENT,
        pl.lit("mri"),
        pl.lit("MRI assessment missing: ") + pl.col("mri_basis"),
        [],
        reads=True,
    )
    disagreement = _rows(
        assessed.filter(pl.col("needs_adjudicator")),
        READER_DISAGREEMENT,
        pl.lit("mri"),
        pl.lit("R1 says ")
        + pl.when(pl.col("r1_healed")).then(pl.lit("healed")).otherwise(pl.lit("not healed"))
        + pl.lit(", R2 says ")
        + pl.when(pl.col("r2_healed")).then(pl.lit("healed")).otherwise(pl.lit("not healed"))
        + pl.lit("; no evaluable adjudicator read"),
        [],
        reads=True,
    )
    discordance = _rows(
        assessed.filter(pl.col("discordant")),
        CLINICAL_MRI_DISCORDANCE,
        pl.lit("primary"),
        pl.lit("clinical ")
        + pl.col("clinical")
        + pl.lit(f" ({rules.primary_visit}: ")
        + pl.col("clinical_reason")
        + pl.lit("), MRI ")
        + pl.col("mri")
        + pl.lit(" (")
        + pl.col("mri_basis")
        + pl.lit(")"),
        confirm,
        reads=True,
    )
    order = _rows(
        assessed.filter(pl.col("visit_order").is_not_null()),
        VISIT_ORDER,
        pl.lit("clinical"),
        pl.lit("confirmation visits out of date order: ")
        + pl.col("visit_order")
        + pl.lit("; correct the exam dates or visits"),
        confirm,
        reads=False,
    )
    readers = pl.concat_str(
        [pl.lit(f"{role} ") + pl.col(f"{role.lower()}_reader") for role in ("R1", "R2", "ADJ")],
        separator=", ",
        ignore_nulls=True,
    )
    independence = _rows(
        assessed.filter(pl.col("readers_not_independent")),
        READER_NOT_INDEPENDENT,
        pl.lit("readers"),
        pl.lit("the final reads are not independent (")
        + readers
        + pl.lit("); a read by a reader already in another role does not count"),
        [],
        reads=True,
    )
    return pl.concat(
        [
            inconsistent,
            missing_clinical,
            missing_mri,
            disagreement,
            discordance,
            order,
            independence,
        ]
    )


def out_of_window(
    exams: pl.LazyFrame, final_reads: pl.LazyFrame, tracts: pl.LazyFrame, rules: RuleSet
) -> pl.LazyFrame:
    """OUT_OF_WINDOW: an assessment an outcome rule reads (``rules.outcome_assessments``)
    dated outside its window, per tract and visit or MRI timepoint. ``exams`` and
    ``final_reads`` carry ``study_day`` and ``in_window`` (``rules/schedule.py``)."""
    assessed = tracts.filter(pl.col("active") & pl.col("treated")).select(TRACT_KEY)
    read_set = set(rules.outcome_assessments)

    def breaches(frame: pl.LazyFrame, assessment: str, what: str, date: str) -> pl.LazyFrame:
        day = pl.col("study_day")
        return (
            frame.filter(
                (pl.col("in_window") == False) & pl.col(assessment).is_in(list(read_set))  # noqa: E712
            )
            .join(assessed, on=TRACT_KEY, how="semi")
            .join(windows(rules), left_on=assessment, right_on="assessment", how="left")
            .group_by(*TRACT_KEY, assessment)
            .agg(
                _days=pl.format("{} ({})", day, pl.col(date)).unique().sort().str.join(", "),
                _from=pl.col("window_from").first(),
                _to=pl.col("window_to").first(),
            )
            .with_columns(
                _detail=pl.format(
                    "{} {} on study day {}; its window is days {} to {} (day 0 = {})",
                    assessment,
                    pl.lit(what),
                    "_days",
                    "_from",
                    "_to",
                    pl.lit(rules.day0_visit),
                )
            )
        )

    exam_rows = _rows(
        breaches(exams, "visit", "exam", "exam_date"),
        OUT_OF_WINDOW,
        pl.col("visit"),
        pl.col("_detail"),
        pl.concat_list(pl.col("visit")),
        reads=False,
    )
    read_rows = _rows(
        breaches(final_reads, "timepoint", "scan", "scan_date"),
        OUT_OF_WINDOW,
        pl.col("timepoint"),
        pl.col("_detail"),
        [],
        reads=True,
    )
    return pl.concat([exam_rows, read_rows])


def with_event_ids(
    conflicts: pl.LazyFrame, exams: pl.LazyFrame, final_reads: pl.LazyFrame
) -> pl.LazyFrame:
    """The ids of the events behind each conflict, looked up for the conflicts alone (they are
    few; the evidence is large, so nothing is carried per tract for this)."""
    from_exams = (
        conflicts.select(*KEY, visit="input_visits")
        .explode("visit")
        .join(exams.select(*TRACT_KEY, "visit", "event_id"), on=[*TRACT_KEY, "visit"])
        .select(*KEY, "event_id")
    )
    from_reads = (
        conflicts.filter(pl.col("input_reads"))
        .select(KEY)
        .join(final_reads.select(*TRACT_KEY, "event_id"), on=TRACT_KEY)
        .select(*KEY, "event_id")
    )
    ids = (
        pl.concat([from_exams, from_reads])
        .group_by(KEY)
        .agg(event_ids=pl.col("event_id").unique().sort())
    )
    return (
        conflicts.join(ids, on=KEY, how="left")
        .with_columns(pl.col("event_ids").fill_null([]))
        .select(*CONFLICT_SCHEMA.names())
    )


def with_identity(conflicts: pl.DataFrame, study: str) -> pl.DataFrame:
    """Add the stable ``conflict_id`` and the input ``fingerprint`` (sha256 based, so they
    survive library upgrades; conflicts are few, so a comprehension is fine here)."""
    keys = conflicts.select(KEY).rows()
    ids = [f"C-{digest(study, *key, length=12)}" for key in keys]
    prints = [digest(*ids_, length=16) for ids_ in conflicts["event_ids"].to_list()]
    return conflicts.with_columns(
        conflict_id=pl.Series(ids, dtype=pl.String), fingerprint=pl.Series(prints, dtype=pl.String)
    ).select("conflict_id", *CONFLICT_SCHEMA.names(), "fingerprint")
