"""What the export reads from a verified lock: the current version of each evidence record,
with the committee's tract mappings applied, the outcome tables, and per-subject dates.

The lock holds every accepted version of every record; the export takes the current ones
with the adjudicator's own rule (``state.current``) so it sees what the lock's checks saw.
It reads only a :class:`Snapshot`, never the log, so it works wherever the lock code lives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

import schemas
from services.adjudicator.state import EVIDENCE_KINDS, current, empty_records
from services.export.errors import ExportError
from services.export.spec import default_study

if TYPE_CHECKING:
    from services.adjudicator.ruleset import RuleSet
    from services.lock.snapshot import Snapshot

TRACT_KEY = ["subject_id", "tract_id"]
_MAPPED_KINDS = ("injection", "clinical_exam", "mri_read", "pathology_report")


@dataclass(frozen=True)
class Inputs:
    """One locked study, ready for the SDTM builders."""

    study: str
    lock_id: str
    locked_at: str
    rules: RuleSet
    design: dict[str, Any]
    evidence: dict[str, pl.DataFrame]
    """Current records by event kind; evidence tracts mapped to the registry tract decided."""
    tracts: pl.DataFrame
    """tract_outcomes of the lock."""
    patients: pl.DataFrame
    conflicts: pl.DataFrame
    new_tracts: pl.DataFrame
    """Tracts the committee decided are new fistulas: subject_id, tract_id, decided_at."""
    subjects: pl.DataFrame
    """One row per subject with USUBJID and the reference dates (first/last dose, last date)."""
    left_out: dict[str, int] = field(default_factory=dict)
    """Evidence rows of tracts neither in the registry nor decided new, by kind."""


def study_design(override: dict[str, Any] | None = None) -> dict[str, Any]:
    """The study metadata: ``schemas/cdisc/study.yaml`` with ``override``'s keys on top."""
    return default_study() | (override or {})


def usubjid(study: str) -> pl.Expr:
    return pl.concat_str([pl.lit(study), pl.col("subject_id")], separator="-")


def check_rules(snapshot: Snapshot, rules: RuleSet) -> None:
    """Derivations in define.xml must describe the rules the lock was adjudicated with."""
    locked = (snapshot.meta.get("rule_set"), snapshot.meta.get("rule_set_version"))
    if locked != (rules.id, rules.version):
        raise ExportError(
            f"lock {snapshot.meta.get('lock_id')} was adjudicated with rule set "
            f"{locked[0]}@v{locked[1]}, but the export loaded {rules.label}; pass the rule-set "
            "file the lock used (--rules PATH)"
        )


def _current(snapshot: Snapshot, kind: str) -> pl.DataFrame:
    frame = snapshot.events.get(kind)
    records = empty_records(kind) if frame is None else frame.lazy()
    return current(records, schemas.contract(kind)).collect()


def _decided(conflicts: pl.DataFrame, status: str) -> pl.DataFrame:
    return conflicts.filter(
        (pl.col("type") == "UNMATCHED_TRACT")
        & (pl.col("status") == "DECIDED")
        & (pl.col("decision_status") == status)
    )


def read_inputs(snapshot: Snapshot, rules: RuleSet, design: dict[str, Any]) -> Inputs:
    """The export's inputs from a verified lock."""
    check_rules(snapshot, rules)
    conflicts = snapshot.tables["conflicts"]
    mapping = _decided(conflicts, "MAPPED").select(*TRACT_KEY, "maps_to")
    new_tracts = _decided(conflicts, "NEW_TRACT").select(*TRACT_KEY, "decided_at", "decision_id")
    registry = _current(snapshot, "tract")
    known = pl.concat([registry.select(TRACT_KEY), new_tracts.select(TRACT_KEY)])
    evidence = {"subject": _current(snapshot, "subject"), "tract": registry}
    left_out: dict[str, int] = {}
    for kind in _MAPPED_KINDS:
        frame = (
            _current(snapshot, kind)
            .join(mapping, on=TRACT_KEY, how="left")
            .with_columns(pl.coalesce("maps_to", "tract_id").alias("tract_id"))
            .drop("maps_to")
        )
        evidence[kind] = frame.join(known, on=TRACT_KEY, how="semi")
        if dropped := frame.height - evidence[kind].height:
            left_out[kind] = dropped
    assert set(evidence) == set(EVIDENCE_KINDS)
    return Inputs(
        study=snapshot.study,
        lock_id=str(snapshot.meta.get("lock_id", "")),
        locked_at=str(snapshot.meta.get("locked_at", "")),
        rules=rules,
        design=design,
        evidence=evidence,
        tracts=snapshot.tables["tract_outcomes"],
        patients=snapshot.tables["patient_outcomes"],
        conflicts=conflicts,
        new_tracts=new_tracts,
        subjects=subject_dates(snapshot.study, evidence, rules),
        left_out=left_out,
    )


def subject_dates(study: str, evidence: dict[str, pl.DataFrame], rules: RuleSet) -> pl.DataFrame:
    """Per subject: USUBJID, site, status, enrolment and withdrawal, first and last injection,
    the last date of any record, and the date of the last primary assessment."""
    inj, exams, reads = evidence["injection"], evidence["clinical_exam"], evidence["mri_read"]
    dated = pl.concat(
        [
            inj.select("subject_id", day="administered_on"),
            exams.select("subject_id", day="exam_date"),
            reads.select("subject_id", day="scan_date"),
            evidence["pathology_report"].select("subject_id", day="collected_on"),
        ]
    )
    final = pl.concat(
        [
            exams.filter(pl.col("visit") == rules.primary_visit).select(
                "subject_id", day="exam_date"
            ),
            reads.filter(pl.col("timepoint") == rules.final_mri).select(
                "subject_id", day="scan_date"
            ),
        ]
    )
    return (
        evidence["subject"]
        .select(
            "subject_id",
            "site_id",
            "status",
            "enrolled_on",
            "withdrawn_on",
            "withdrawal_reason",
            USUBJID=usubjid(study),
        )
        .join(
            inj.group_by("subject_id").agg(
                first_dose=pl.col("administered_on").min(),
                last_dose=pl.col("administered_on").max(),
            ),
            on="subject_id",
            how="left",
        )
        .join(
            dated.group_by("subject_id").agg(last_record=pl.col("day").max()),
            on="subject_id",
            how="left",
        )
        .join(
            final.group_by("subject_id").agg(last_visit=pl.col("day").max()),
            on="subject_id",
            how="left",
        )
        .with_columns(last_date=pl.max_horizontal("last_record", "withdrawn_on", "enrolled_on"))
        .sort("subject_id")
    )
