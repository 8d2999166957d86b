"""The five divergences from PROTOCOL.md of issue 12, each through the real engine: a side
definitively not closed decides, no id is silently dropped, one conflict scope, records that
disagree on any field the rules read, and committee decisions on the primary definition only."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from services.adjudicator.report import build_report
from tests.adjudicator.builders import (
    closed_exams,
    conflict_row,
    conflict_types,
    decision,
    evidence,
    exam,
    healed_reads,
    outcome,
    read,
    run,
    subject,
    tract,
)


def one_tract(exams: list[dict], reads: list[dict], treated: bool = True):
    return run(evidence([subject("S1")], [tract("S1", treated=treated)], exams, reads))


def baseline() -> dict:
    return exam("S1", "T1", "INJ1", "OPEN", True, 2)


# 1. Definitively not closed, yet PENDING ---------------------------------------------------


def test_fu6_records_disagreeing_only_between_not_closed_states_make_the_tract_not_closed() -> None:
    exams = [
        baseline(),
        exam("S1", "T1", "FU5"),
        exam("S1", "T1", "FU6", "OPEN", True, 1),
        exam("S1", "T1", "FU6", "OPEN", False, 1),
    ]
    result = one_tract(exams, healed_reads("S1"))
    assert outcome(result, "S1", column="clinical") == "NOT_CLOSED"
    assert outcome(result, "S1") == "NOT_CLOSED"
    assert outcome(result, "S1", column="fu6_closed") is False
    assert conflict_types(result) == {
        ("INCONSISTENT_EXAM", "S1", "T1"),
        ("CLINICAL_MRI_DISCORDANCE", "S1", "T1"),  # clinically not closed, MRI healed
    }


def test_fu5_open_versus_not_draining_with_fu6_closed_is_not_sustained() -> None:
    exams = [
        baseline(),
        exam("S1", "T1", "FU5", "OPEN", True, 1),
        exam("S1", "T1", "FU5", "OPEN", False, 1),
        exam("S1", "T1", "FU6"),
    ]
    result = one_tract(exams, healed_reads("S1"))
    assert outcome(result, "S1", column="clinical") == "NOT_CLOSED"
    assert outcome(result, "S1") == "NOT_CLOSED"
    assert ("INCONSISTENT_EXAM", "S1", "T1") in conflict_types(result)


def test_a_confirmation_visit_not_closed_decides_even_while_fu6_is_in_conflict() -> None:
    exams = [
        baseline(),
        exam("S1", "T1", "FU5", "OPEN", True, 1),
        exam("S1", "T1", "FU6"),
        exam("S1", "T1", "FU6", "OPEN", True, 1),  # FU6 closed or not: either way not sustained
    ]
    result = one_tract(exams, healed_reads("S1"))
    assert outcome(result, "S1") == "NOT_CLOSED"


def test_fu5_open_with_fu6_missing_is_not_closed_and_fu6_is_still_missing() -> None:
    exams = [baseline(), exam("S1", "T1", "FU5", "OPEN", True, 1)]
    result = one_tract(exams, healed_reads("S1"))
    assert outcome(result, "S1") == "NOT_CLOSED"
    # The protocol's condition ("FU6 missing") holds, so the conflict is raised all the same.
    assert ("MISSING_ASSESSMENT", "S1", "T1") in conflict_types(result)


def test_closed_versus_open_at_fu6_stays_pending() -> None:
    exams = [*closed_exams("S1"), exam("S1", "T1", "FU6", "OPEN", True, 1)]
    assert outcome(one_tract(exams, healed_reads("S1")), "S1") == "PENDING"


# 2. Evidence silently dropped --------------------------------------------------------------


def test_evidence_of_a_subject_without_a_subject_record_is_a_conflict() -> None:
    ev = evidence(
        [subject("S1")],
        [tract("S1")],
        [*closed_exams("S1"), exam("S99", "T1", "FU6", event_id="ghost-exam")],
        [*healed_reads("S1"), read("S99", "T1", "R1", event_id="ghost-read")],
    )
    result = run(ev)
    row = conflict_row(result, "UNKNOWN_SUBJECT", "S99", "")
    assert row["status"] == "OPEN"
    assert row["event_ids"] == ["ghost-exam", "ghost-read"]
    assert "1 exam" in row["detail"] and "1 MRI read" in row["detail"]
    assert outcome(result, "S1") == "CLOSED"  # the known subject is untouched


def test_a_registry_tract_whose_subject_has_no_record_is_counted_and_raised() -> None:
    ev = evidence(
        [subject("S1")],
        [tract("S1"), tract("S2", event_id="orphan-tract")],
        [*closed_exams("S1"), *closed_exams("S2")],
        [*healed_reads("S1"), *healed_reads("S2")],
    )
    result = run(ev)
    assert ("UNKNOWN_SUBJECT", "S2", "") in conflict_types(result)
    assert "orphan-tract" in conflict_row(result, "UNKNOWN_SUBJECT", "S2", "")["event_ids"]
    patients = dict(result.patients.select("subject_id", "category").iter_rows())
    assert patients == {"S1": "FULL_CLOSURE", "S2": "PENDING"}  # in the patient table, pending
    assert result.patients.filter(pl.col("subject_id") == "S2")["subject_status"][0] is None


# 3. One conflict scope: treated tracts of subjects not withdrawn ----------------------------


def test_untreated_tracts_raise_no_outcome_conflict_of_any_type() -> None:
    exams = [
        exam("S1", "T1", "INJ1", "CLOSED", True, 2),  # contradictory
        exam("S1", "T1", "FU5", "OPEN", True, 1),
        exam("S1", "T1", "FU6", "OPEN", True, 1),
        exam("S1", "T1", "FU6", "OPEN", True, 3),  # disagreeing grade
    ]
    reads = [read("S1", "T1", "R1"), read("S1", "T1", "R2", t2=True)]
    assert conflict_types(one_tract(exams, reads, treated=False), status=None) == set()
    treated = conflict_types(one_tract(exams, reads, treated=True))
    assert {t for t, _, _ in treated} == {"INCONSISTENT_EXAM", "READER_DISAGREEMENT"}


def test_untreated_tract_with_fu6_missing_raises_no_missing_assessment() -> None:
    untreated = one_tract([baseline(), exam("S1", "T1", "FU5")], [], treated=False)
    assert conflict_types(untreated, status=None) == set()


# 4. Disagreeing records that agree on status -------------------------------------------------


def test_records_agreeing_on_status_but_not_on_discharge_grade_are_inconsistent() -> None:
    exams = [*closed_exams("S1"), exam("S1", "T1", "FU6", grade=1)]  # FU6 grade 0 and 1
    result = one_tract(exams, healed_reads("S1"))
    assert conflict_types(result) == {("INCONSISTENT_EXAM", "S1", "T1")}
    assert "discharge grade" in conflict_row(result, "INCONSISTENT_EXAM", "S1")["detail"]
    assert outcome(result, "S1") == "CLOSED"  # closure itself is not in doubt
    assert outcome(result, "S1", column="discharge_improved") is None


def test_a_grade_recorded_in_one_record_and_missing_in_the_other_disagrees() -> None:
    exams = [*closed_exams("S1"), exam("S1", "T1", "FU6", grade=None)]
    assert conflict_types(one_tract(exams, healed_reads("S1"))) == {
        ("INCONSISTENT_EXAM", "S1", "T1")
    }


def test_records_agreeing_on_everything_the_rules_read_raise_nothing() -> None:
    exams = [*closed_exams("S1"), exam("S1", "T1", "FU6", examiner_id="EXAM-2")]
    assert conflict_types(one_tract(exams, healed_reads("S1"))) == set()


# 5. Committee decisions apply to the primary definition only --------------------------------


def test_an_outcome_decision_changes_the_primary_and_no_sensitivity_definition() -> None:
    ev = evidence(
        [subject("S1")],
        [tract("S1")],
        closed_exams("S1"),
        [read("S1", "T1", r, t2=True) for r in ("R1", "R2")],  # discordant: NOT_CLOSED by rule
    )
    before = run(ev)
    discordance = conflict_row(before, "CLINICAL_MRI_DISCORDANCE", "S1")
    after = run(ev, decisions=[decision(discordance, "CLOSED", datetime(2025, 1, 1, tzinfo=UTC))])
    assert (outcome(before, "S1"), outcome(after, "S1")) == ("NOT_CLOSED", "CLOSED")
    columns = ["admire_outcome", "clinical_only_outcome", "in_window_outcome"]
    assert before.tracts.select(columns).equals(after.tracts.select(columns))
    patient = ["admire_category", "clinical_only_category", "in_window_category", "response_50"]
    assert before.patients.select(patient).equals(after.patients.select(patient))
    assert after.patients["category"][0] == "FULL_CLOSURE"


def mistyped_fu6() -> tuple[list[dict], list[dict]]:
    """S1's FU6 exam filed under T1X (a typo); the registry has T1 only."""
    exams = [*closed_exams("S1")[:-1], exam("S1", "T1X", "FU6")]
    return exams, healed_reads("S1")


def test_a_mapping_corrects_the_evidence_of_every_definition_alike() -> None:
    """MAPPED re-keys evidence (data identity), like a site correction: every definition reads
    the re-keyed exam, so the sensitivity definitions compare definitions on the same data."""
    exams, reads = mistyped_fu6()
    ev = evidence([subject("S1")], [tract("S1")], exams, reads)
    before = run(ev)
    assert outcome(before, "S1", column="clinical_only_outcome") == "PENDING"  # FU6 missing
    typo = conflict_row(before, "UNMATCHED_TRACT", "S1", "T1X")
    mapped = decision(typo, "MAPPED", datetime(2025, 1, 1, tzinfo=UTC), maps_to="T1")
    after = run(ev, decisions=[mapped])
    row = after.tracts.row(0, named=True)
    assert (row["outcome"], row["decided_by"]) == ("CLOSED", "RULE")  # not an outcome override
    assert row["admire_outcome"] == row["clinical_only_outcome"] == "CLOSED"
    assert row["in_window_outcome"] == "CLOSED"
    assert after.patients["response_50"][0] is True


def test_a_mapping_moves_the_pathology_reports_too() -> None:
    exams, reads = mistyped_fu6()
    ev = evidence([subject("S1")], [tract("S1")], exams, reads)
    typo = conflict_row(run(ev), "UNMATCHED_TRACT", "S1", "T1X")
    result = run(
        ev, decisions=[decision(typo, "MAPPED", datetime(2025, 1, 1, tzinfo=UTC), maps_to="T1")]
    )
    reports = pl.DataFrame(
        {
            "subject_id": ["S1", "S1"],
            "tract_id": ["T1", "T1X"],
            "visit": ["INJ1", "INJ3"],
            "specimen_adequate": [True, True],
            **{m: [40.0, 20.0] for m in ("cd68_per_hpf", "cd20_per_hpf", "cd31_per_hpf")},
            "inflammation_grade": [3, 1],
        }
    )
    report = build_report(
        result.tracts, result.patients, result.conflicts, reports, level=0.95, meta={}
    )
    assert report["pathology"]["medians"]["INJ3"]["n"] == 1  # T1X's INJ3 report counts for T1
