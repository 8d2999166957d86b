"""Adjudication of one study: current evidence + decisions in, outcomes and conflicts out.

The whole computation is a handful of Polars plans over the study's frames (no per-row
Python), so re-adjudicating everything is cheap enough to do after every change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from services.adjudicator.committee import conflict_status, tract_mappings, tract_overrides
from services.adjudicator.rules import TRACT_KEY
from services.adjudicator.rules.clinical import clinical_sustained, visit_status
from services.adjudicator.rules.conflicts import KEY as CONFLICT_KEY
from services.adjudicator.rules.conflicts import (
    out_of_window,
    outcome_conflicts,
    outside_registry,
    unmatched_tracts,
    with_event_ids,
    with_identity,
)
from services.adjudicator.rules.discharge import discharge_improved
from services.adjudicator.rules.mri import mri_consensus
from services.adjudicator.rules.patient import patient_category
from services.adjudicator.rules.primary import primary_outcome
from services.adjudicator.rules.registry import (
    SUBJECT_KEY,
    duplicate_registrations,
    first_received,
    unknown_subjects,
)
from services.adjudicator.rules.schedule import day_zero, window_flags
from services.adjudicator.rules.sensitivity import (
    in_window_outcomes,
    response_50,
    sensitivity_outcomes,
)
from services.adjudicator.ruleset import RuleSet
from services.adjudicator.state import Evidence


@dataclass(frozen=True)
class Adjudication:
    """Everything the rules concluded for one study."""

    study: str
    rule_set: str
    rule_set_version: int
    tracts: pl.DataFrame
    patients: pl.DataFrame
    conflicts: pl.DataFrame
    visits: pl.DataFrame
    new_tracts: pl.DataFrame

    def open_conflicts(self) -> pl.DataFrame:
        return self.conflicts.filter(pl.col("status") == "OPEN")


INPUT_COLUMNS = (
    "subject_event_id",
    "tract_event_id",
    "clinical_event_ids",
    "discharge_event_ids",
    "r1_event_id",
    "r2_event_id",
    "adj_event_id",
)
"""Where a tract outcome names the events it used, by role: the registry rows, the exams at
the visits the rules read (confirmation visits; discharge baseline) and the final reads that
counted. Kept apart rather than flattened: an auditor sees which event played which part."""


def used_event_ids(tract: Mapping[str, Any]) -> list[str]:
    """Every event one tract outcome (a row of ``Adjudication.tracts``) used, sorted."""
    ids: list[str | None] = []
    for column in INPUT_COLUMNS:
        value = tract.get(column)
        ids.extend([value] if isinstance(value, str) else value or ())
    return sorted({i for i in ids if i is not None})


_ENVELOPE = ("subject_id", "tract_id", "event_id", "offset")
_COLUMNS = {
    "subjects": (
        "subject_id",
        "record_id",
        "status",
        "site_id",
        "enrolled_on",
        "withdrawn_on",
        "event_id",
        "offset",
    ),
    "tracts": (*_ENVELOPE, "record_id", "treated", "parks_type"),
    "injections": (*_ENVELOPE, "visit", "administered_on"),
    "exams": (
        *_ENVELOPE,
        "visit",
        "exam_date",
        "external_opening",
        "drains_on_compression",
        "discharge_grade",
    ),
    "reads": (
        *_ENVELOPE,
        "timepoint",
        "scan_date",
        "reader_role",
        "reader_id",
        "image_quality",
        "t2_hyperintense",
        "collection_mm",
        "read_at",
    ),
    "pathology": _ENVELOPE,
}


def _beside(first: pl.DataFrame, *others: pl.DataFrame) -> pl.DataFrame:
    """Frames with the same tract keys in the same order, side by side (no join, no copy).

    The keys are unique by construction (``first_received``), and each rule keeps the rows
    and order it is given, so a mismatch here is a bug in a rule, never a property of data.
    """
    for other in others:
        if not other.select(TRACT_KEY).equals(first.select(TRACT_KEY)):
            raise RuntimeError("a rule changed the rows or the order of the tracts it was given")
    return pl.concat([first, *(other.drop(TRACT_KEY) for other in others)], how="horizontal")


def _flag_post_lock(
    frame: pl.LazyFrame, kind: str, positions: dict[str, int] | None
) -> pl.LazyFrame:
    limit = (positions or {}).get(kind)
    return frame.with_columns(
        post_lock=pl.lit(False) if limit is None else pl.col("offset") >= limit
    )


def adjudicate(
    study: str,
    evidence: Evidence,
    rules: RuleSet,
    decisions: pl.LazyFrame,
    register: pl.LazyFrame,
    lock_positions: dict[str, int] | None = None,
) -> Adjudication:
    """Apply the rule set and the committee's decisions to the current evidence of ``study``.

    ``evidence`` may be lazy: only the columns the rules read are loaded, once.
    """
    evidence = evidence.collect(_COLUMNS)
    # Decisions and the conflict register are read by both conflict_status calls: decode once.
    decisions, register = (frame.lazy() for frame in pl.collect_all([decisions, register]))
    # One record per subject and per registry tract (the first received); the others are
    # DUPLICATE_REGISTRATION conflicts. From here on every tract key is unique.
    subjects, subject_copies = first_received(evidence.subjects, SUBJECT_KEY)
    registry, tract_copies = first_received(evidence.tracts, TRACT_KEY)
    subjects, subject_copies, tract_copies, registry = (
        frame.lazy()
        for frame in pl.collect_all(
            [subjects, subject_copies, tract_copies, registry.sort(TRACT_KEY)]
        )
    )
    active = subjects.filter(pl.col("status") != "WITHDRAWN").select("subject_id")
    exams = _flag_post_lock(evidence.exams, "clinical_exam", lock_positions)
    reads = _flag_post_lock(evidence.reads, "mri_read", lock_positions)
    by_source = {
        "exams": exams,
        "MRI reads": reads,
        "pathology": evidence.pathology,
        "injections": evidence.injections,
    }
    outside = outside_registry(by_source, registry).collect().lazy()
    # Subject ids named by evidence or the registry without a subject record (usually none:
    # only then is the evidence gathered again, by subject).
    unknown = (
        pl.concat([outside.select("subject_id"), evidence.tracts.select("subject_id")])
        .unique()
        .join(subjects, on="subject_id", how="anti")
        .collect()
    )
    sources = {
        "registry tract": evidence.tracts,
        "exam": exams,
        "MRI read": reads,
        "pathology report": evidence.pathology,
        "injection": evidence.injections,
    }
    identity = pl.concat(
        [
            duplicate_registrations(subject_copies, tract_copies, subjects),
            *([unknown_subjects(sources, unknown.lazy())] if unknown.height else []),
        ]
    )

    # UNMATCHED_TRACT first: its decisions (map to a registry tract, or a new fistula) change
    # which tract the rest of the evidence belongs to, for every definition alike (a mapping
    # re-keys a record, as a site correction would; it decides no outcome).
    unmatched = with_identity(unmatched_tracts(outside, active).collect(), study)
    unmatched_status = conflict_status(unmatched.lazy(), decisions, register)
    mappings = tract_mappings(unmatched_status).collect()
    remap = mappings.filter(pl.col("decision_status") == "MAPPED")
    new_tracts = mappings.filter(pl.col("decision_status") == "NEW_TRACT").drop("maps_to")

    def mapped(frame: pl.LazyFrame) -> pl.LazyFrame:
        """Evidence of mapped tracts moves to its registry tract; other unmatched evidence is
        left out of the outcome rules (it is in the UNMATCHED_TRACT conflict)."""
        if unmatched.is_empty():
            return frame
        return (
            frame.join(remap.lazy().select(*TRACT_KEY, "maps_to"), on=TRACT_KEY, how="left")
            .with_columns(pl.coalesce("maps_to", "tract_id").alias("tract_id"))
            .drop("maps_to")
            .join(unmatched.lazy().select(TRACT_KEY), on=TRACT_KEY, how="anti")
        )

    # Materialise the shared intermediates once: each later plan reads them, not the evidence.
    day0 = day_zero(evidence.injections, evidence.exams, rules).collect().lazy()
    exams, reads = pl.collect_all([mapped(exams), mapped(reads)])
    exam_days, read_days = pl.collect_all(
        [
            window_flags(exams.lazy(), "visit", "exam_date", day0, rules),
            window_flags(reads.lazy(), "timepoint", "scan_date", day0, rules),
        ]
    )
    exams, reads = exams.hstack(exam_days).lazy(), reads.hstack(read_days).lazy()
    final_reads = reads.filter(pl.col("timepoint") == rules.final_mri)
    visits = visit_status(exams).collect().lazy()
    post_lock = (
        pl.concat([exams.select(*TRACT_KEY, "post_lock"), reads.select(*TRACT_KEY, "post_lock")])
        .filter("post_lock")
        .unique(TRACT_KEY)
    )
    # Each rule adds its columns to the sorted tract keys, keeping their order; the narrow
    # results are then set side by side, so no wide frame is joined (or copied) again.
    keys = registry.select(TRACT_KEY)
    tracts = _beside(
        *pl.collect_all(
            [
                registry.select(*TRACT_KEY, "treated", "parks_type", tract_event_id="event_id")
                .join(
                    subjects.select(
                        "subject_id", subject_status="status", subject_event_id="event_id"
                    ),
                    on="subject_id",
                    how="left",
                    maintain_order="left",
                )
                .with_columns(
                    active=pl.col("subject_status").fill_null("") != "WITHDRAWN",
                    completed=pl.col("subject_status") == "COMPLETED",
                ),
                clinical_sustained(keys, visits, rules),
                mri_consensus(keys, reads, rules),
                discharge_improved(keys, visits, rules),
                keys.join(post_lock, on=TRACT_KEY, how="left", maintain_order="left"),
            ],
            engine="in-memory",
        )
    )
    tracts = (
        tracts.lazy()
        .pipe(primary_outcome)
        .pipe(sensitivity_outcomes)
        .pipe(in_window_outcomes, exams, reads, rules)
        .with_columns(
            pl.col("post_lock").fill_null(False),
            rule_set=pl.lit(rules.id),
            rule_set_version=pl.lit(rules.version),
        )
        .collect(engine="in-memory")
    )

    found = with_identity(
        with_event_ids(
            pl.concat(
                [
                    outcome_conflicts(visits, tracts.lazy(), rules),
                    out_of_window(exams, final_reads, tracts.lazy(), rules),
                ]
            ),
            exams,
            final_reads,
        ).collect(),
        study,
    )
    current = pl.concat([with_identity(identity.collect(), study), unmatched, found])
    statuses = conflict_status(current.lazy(), decisions, register).collect()

    overrides = keys.join(
        tract_overrides(statuses.lazy()), on=TRACT_KEY, how="left", maintain_order="left"
    ).collect()
    tracts = _beside(tracts, overrides).with_columns(
        outcome=pl.coalesce("committee_outcome", "rule_outcome"),
        decided_by=pl.when(pl.col("committee_outcome").is_not_null())
        .then(pl.lit("COMMITTEE"))
        .otherwise(pl.lit("RULE")),
    )
    lazy = tracts.lazy()
    definitions = {
        "outcome": "category",
        "admire_outcome": "admire_category",
        "clinical_only_outcome": "clinical_only_category",
        "in_window_outcome": "in_window_category",
    }
    # Subjects named only by the registry (no subject record) get a row too, status unknown.
    unregistered = (
        registry.select("subject_id")
        .unique()
        .join(subjects, on="subject_id", how="anti")
        .with_columns(status=pl.lit(None, pl.String))
    )
    everyone = pl.concat([subjects.select("subject_id", "status"), unregistered])
    patients = (
        patient_category(
            lazy, everyone, definitions, {"in_window_outcome": "in_window_discharge_improved"}
        )
        .join(response_50(lazy, rules.response_fraction), on="subject_id", how="left")
        .with_columns(rule_set=pl.lit(rules.id), rule_set_version=pl.lit(rules.version))
        .sort("subject_id")
    )
    tracts, patients = _analysis_columns(
        study, tracts.lazy(), patients, subjects, visits, final_reads, rules
    )
    return Adjudication(
        study=study,
        rule_set=rules.id,
        rule_set_version=rules.version,
        tracts=tracts,
        patients=patients,
        conflicts=statuses.sort(CONFLICT_KEY),
        visits=visits.collect(),
        new_tracts=new_tracts,
    )


def _analysis_columns(
    study: str,
    tracts: pl.LazyFrame,
    patients: pl.LazyFrame,
    subjects: pl.LazyFrame,
    visits: pl.LazyFrame,
    final_reads: pl.LazyFrame,
    rules: RuleSet,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What an analysis needs beside the outcome: the study, the subject's site and dates, and
    the dates of the primary assessment (the primary visit's exam, the final MRI scan)."""
    about = subjects.select("subject_id", "site_id", "enrolled_on", "withdrawn_on")
    primary = visits.filter(pl.col("visit") == rules.primary_visit).select(
        *TRACT_KEY, primary_visit_date="last_date"
    )
    scanned = final_reads.group_by(TRACT_KEY).agg(final_mri_date=pl.col("scan_date").max())
    # Joined to the keys alone, then set beside the wide tract table: no copy of its columns.
    added = (
        tracts.select(TRACT_KEY)
        .join(about, on="subject_id", how="left", maintain_order="left")
        .join(primary, on=TRACT_KEY, how="left", maintain_order="left")
        .join(scanned, on=TRACT_KEY, how="left", maintain_order="left")
        .with_columns(study=pl.lit(study))
    )
    patients = patients.join(
        about, on="subject_id", how="left", maintain_order="left"
    ).with_columns(study=pl.lit(study))
    wide, added, patients = pl.collect_all([tracts, added, patients])
    return _beside(wide, added), patients
