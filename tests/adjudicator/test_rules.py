"""Each rule of PROTOCOL.md on tiny hand-built trials: thresholds at their edges, every
conflict type, and the three-valued outcome."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from services.adjudicator.engine import used_event_ids
from services.adjudicator.rules.clinical import clinical_sustained, exam_status, visit_status
from services.adjudicator.rules.discharge import discharge_improved
from services.adjudicator.rules.mri import mri_consensus, mri_healed
from services.adjudicator.rules.primary import closure
from services.adjudicator.ruleset import load_ruleset
from tests.adjudicator.builders import (
    STAMP,
    closed_exams,
    conflict_row,
    conflict_types,
    decision,
    evidence,
    exam,
    healed_reads,
    outcome,
    read,
    rules,
    run,
    subject,
    tract,
)


def one_tract(exams: list[dict], reads: list[dict], status: str = "COMPLETED", rule_set=None):
    """A trial of one subject S1 with one treated tract T1."""
    return run(evidence([subject("S1", status)], [tract("S1")], exams, reads), rule_set)


# mri.healed -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t2", "collection", "quality", "healed"),
    [
        (False, None, "ADEQUATE", True),
        (True, None, "ADEQUATE", False),
        (False, [20.0, 20.0, 5.0], "ADEQUATE", True),  # exactly 20 mm is not larger than 20
        (False, [20.1, 20.1, 5.0], "ADEQUATE", False),
        (False, [25.0, 10.0, 8.0], "ADEQUATE", True),  # one large dimension of the two needed
        (False, [25.0, 30.0, 8.0], "ADEQUATE", False),
        (False, None, "INADEQUATE", None),  # not evaluable
    ],
)
def test_mri_healed_edges(
    t2: bool, collection: list[float] | None, quality: str, healed: bool | None
) -> None:
    reads = pl.LazyFrame(
        {"t2_hyperintense": [t2], "collection_mm": [collection], "image_quality": [quality]},
        schema={
            "t2_hyperintense": pl.Boolean,
            "collection_mm": pl.List(pl.Float64),
            "image_quality": pl.String,
        },
    )
    result = mri_healed(reads, load_ruleset().mri).collect()
    assert result["healed"][0] is healed
    assert result["evaluable"][0] is (quality == "ADEQUATE")


def test_mri_thresholds_come_from_the_rule_set() -> None:
    reads = pl.LazyFrame(
        {
            "t2_hyperintense": [False],
            "collection_mm": [[25.0, 10.0, 8.0]],
            "image_quality": ["ADEQUATE"],
        }
    )
    one_dimension = rules(mri={"collection_dims": 1}).mri
    assert mri_healed(reads, one_dimension).collect()["healed"][0] is False
    bigger = rules(mri={"collection_mm": 30}).mri
    assert mri_healed(reads, bigger).collect()["healed"][0] is True


# mri.consensus ----------------------------------------------------------------------------


def test_readers_agree() -> None:
    result = one_tract(closed_exams("S1"), healed_reads("S1"))
    assert outcome(result, "S1", column="mri") == "HEALED"
    assert outcome(result, "S1") == "CLOSED"
    assert conflict_types(result) == set()


def test_reader_disagreement_without_adjudicator_is_undecided_with_a_conflict() -> None:
    result = one_tract(
        closed_exams("S1"), [read("S1", "T1", "R1"), read("S1", "T1", "R2", t2=True)]
    )
    assert outcome(result, "S1", column="mri") is None
    assert outcome(result, "S1") == "PENDING"
    assert conflict_types(result) == {("READER_DISAGREEMENT", "S1", "T1")}


@pytest.mark.parametrize(("adj_t2", "expected"), [(False, "CLOSED"), (True, "NOT_CLOSED")])
def test_reader_disagreement_decided_by_the_adjudicator(adj_t2: bool, expected: str) -> None:
    reads = [
        read("S1", "T1", "R1"),
        read("S1", "T1", "R2", t2=True),
        read("S1", "T1", "ADJ", t2=adj_t2),
    ]
    result = one_tract(closed_exams("S1"), reads)
    assert outcome(result, "S1", column="mri_basis") == "adjudicator read"
    assert outcome(result, "S1") == expected
    assert "READER_DISAGREEMENT" not in {t for t, _, _ in conflict_types(result)}


def test_an_adjudicator_read_does_not_override_agreeing_primary_reads() -> None:
    reads = [*healed_reads("S1"), read("S1", "T1", "ADJ", t2=True)]
    result = one_tract(closed_exams("S1"), reads)
    assert outcome(result, "S1", column="mri_basis") == "R1 and R2 agree"
    assert outcome(result, "S1") == "CLOSED"


@pytest.mark.parametrize("arrival", ["in order", "latest first"])
def test_a_role_read_twice_counts_with_its_latest_read(arrival: str) -> None:
    first = read("S1", "T1", "R1", t2=True, read_at=STAMP, offset=1)
    latest = read("S1", "T1", "R1", read_at=STAMP + timedelta(days=3), offset=2)
    twice = [first, latest] if arrival == "in order" else [latest, first]
    result = one_tract(closed_exams("S1"), [*twice, read("S1", "T1", "R2")])
    assert outcome(result, "S1", column="r1_event_id") == latest["event_id"]
    assert outcome(result, "S1") == "CLOSED"


def test_a_role_read_twice_at_the_same_time_counts_with_the_later_in_the_log() -> None:
    earlier = read("S1", "T1", "R1", t2=True, read_at=STAMP, offset=5)
    later = read("S1", "T1", "R1", read_at=STAMP, offset=6)
    result = one_tract(closed_exams("S1"), [later, earlier, read("S1", "T1", "R2")])
    assert outcome(result, "S1", column="r1_event_id") == later["event_id"]


def test_inadequate_primary_read_falls_back_to_the_adjudicator() -> None:
    reads = [
        read("S1", "T1", "R1"),
        read("S1", "T1", "R2", quality="INADEQUATE"),
        read("S1", "T1", "ADJ"),
    ]
    result = one_tract(closed_exams("S1"), reads)
    assert outcome(result, "S1") == "CLOSED"


def test_fewer_than_two_evaluable_reads_and_no_adjudicator_is_missing() -> None:
    reads = [read("S1", "T1", "R1"), read("S1", "T1", "R2", quality="INADEQUATE")]
    result = one_tract(closed_exams("S1"), reads)
    assert outcome(result, "S1") == "PENDING"
    assert conflict_types(result) == {("MISSING_ASSESSMENT", "S1", "T1")}


def test_inadequate_adjudicator_read_does_not_decide() -> None:
    reads = [
        read("S1", "T1", "R1"),
        read("S1", "T1", "R2", t2=True),
        read("S1", "T1", "ADJ", quality="INADEQUATE"),
    ]
    result = one_tract(closed_exams("S1"), reads)
    assert outcome(result, "S1") == "PENDING"
    assert conflict_types(result) == {("READER_DISAGREEMENT", "S1", "T1")}


def test_baseline_reads_do_not_count_for_the_final_mri() -> None:
    # Baseline reads re-read after the final ones: neither latest nor log order lets them in.
    later = STAMP + timedelta(days=900)
    baseline = [
        read("S1", "T1", r, t2=True, timepoint="MRI_BL", read_at=later, offset=10_000 + i)
        for i, r in enumerate(("R1", "R2"))
    ]
    assert (
        outcome(one_tract(closed_exams("S1"), [*healed_reads("S1"), *baseline]), "S1") == "CLOSED"
    )


# clinical.status and clinical.sustained ----------------------------------------------------


@pytest.mark.parametrize(
    ("opening", "drains", "status"),
    [
        ("CLOSED", False, "CLOSED"),
        ("OPEN", True, "OPEN"),
        ("OPEN", False, "NOT_DRAINING"),
        ("CLOSED", True, "CONTRADICTORY"),
    ],
)
def test_exam_status(opening: str, drains: bool, status: str) -> None:
    frame = pl.LazyFrame({"external_opening": [opening], "drains_on_compression": [drains]})
    assert exam_status(frame).collect()["exam_status"][0] == status


def test_closed_at_fu6_but_open_at_fu5_is_not_sustained() -> None:
    exams = [
        exam("S1", "T1", "INJ1", "OPEN", True, 2),
        exam("S1", "T1", "FU5", "OPEN", True, 1),
        exam("S1", "T1", "FU6"),
    ]
    result = one_tract(exams, healed_reads("S1"))
    assert outcome(result, "S1", column="clinical") == "NOT_CLOSED"
    assert outcome(result, "S1") == "NOT_CLOSED"
    # Clinically not closed while MRI says healed: discordant, for the committee.
    assert conflict_types(result) == {("CLINICAL_MRI_DISCORDANCE", "S1", "T1")}


def test_not_draining_at_fu6_counts_as_not_closed() -> None:
    exams = [
        exam("S1", "T1", "INJ1", "OPEN", True, 2),
        exam("S1", "T1", "FU5"),
        exam("S1", "T1", "FU6", "OPEN", False, 0),
    ]
    result = one_tract(exams, [read("S1", "T1", r, t2=True) for r in ("R1", "R2")])
    assert outcome(result, "S1", column="clinical") == "NOT_CLOSED"
    assert outcome(result, "S1") == "NOT_CLOSED"


def test_fu5_missing_with_fu6_closed_is_a_missing_assessment() -> None:
    exams = [exam("S1", "T1", "INJ1", "OPEN", True, 2), exam("S1", "T1", "FU6")]
    result = one_tract(exams, healed_reads("S1"))
    assert outcome(result, "S1", column="clinical") is None
    assert outcome(result, "S1") == "PENDING"
    assert conflict_types(result) == {("MISSING_ASSESSMENT", "S1", "T1")}


def test_fu5_missing_with_fu6_open_is_decided() -> None:
    exams = [exam("S1", "T1", "INJ1", "OPEN", True, 2), exam("S1", "T1", "FU6", "OPEN", True, 2)]
    result = one_tract(exams, [read("S1", "T1", r, t2=True) for r in ("R1", "R2")])
    assert outcome(result, "S1") == "NOT_CLOSED"
    assert conflict_types(result) == set()


def test_fu6_missing_is_a_missing_assessment_once_completed() -> None:
    exams = [exam("S1", "T1", "INJ1", "OPEN", True, 2), exam("S1", "T1", "FU5")]
    completed = one_tract(exams, healed_reads("S1"))
    assert conflict_types(completed) == {("MISSING_ASSESSMENT", "S1", "T1")}
    ongoing = one_tract(exams, healed_reads("S1"), status="ENROLLED")
    assert conflict_types(ongoing) == set()
    assert outcome(ongoing, "S1") == "PENDING"


def test_closed_visits_must_be_min_gap_days_apart() -> None:
    fu6 = closed_exams("S1")[-1]["exam_date"]

    def visits(gap: int) -> list[dict]:
        return [
            exam("S1", "T1", "INJ1", "OPEN", True, 2),
            exam("S1", "T1", "FU5", exam_date=fu6 - timedelta(days=gap)),
            exam("S1", "T1", "FU6", exam_date=fu6),
        ]

    assert (
        outcome(one_tract(visits(27), healed_reads("S1")), "S1", column="clinical") == "NOT_CLOSED"
    )
    assert outcome(one_tract(visits(28), healed_reads("S1")), "S1", column="clinical") == "CLOSED"


def test_confirmations_come_from_the_rule_set() -> None:
    exams = [
        exam("S1", "T1", "INJ1", "OPEN", True, 2),
        exam("S1", "T1", "FU4", "OPEN", True, 1),
        exam("S1", "T1", "FU5"),
        exam("S1", "T1", "FU6"),
    ]
    assert outcome(one_tract(exams, healed_reads("S1")), "S1") == "CLOSED"
    three = rules(clinical={"confirmations": 3, "min_gap_days": 28})
    assert outcome(one_tract(exams, healed_reads("S1"), rule_set=three), "S1") == "NOT_CLOSED"


# INCONSISTENT_EXAM ---------------------------------------------------------------------------


def test_closed_opening_with_drainage_is_inconsistent() -> None:
    exams = [*closed_exams("S1"), exam("S1", "T1", "FU2", "CLOSED", True, 1)]
    result = one_tract(exams, healed_reads("S1"))
    assert conflict_types(result) == {("INCONSISTENT_EXAM", "S1", "T1")}
    assert (
        outcome(result, "S1") == "CLOSED"
    )  # FU2 does not decide the outcome; the conflict is raised anyway


def test_two_current_records_that_disagree_are_inconsistent_and_undecided() -> None:
    exams = [*closed_exams("S1"), exam("S1", "T1", "FU6", "OPEN", True, 2)]
    result = one_tract(exams, healed_reads("S1"))
    assert conflict_types(result) == {("INCONSISTENT_EXAM", "S1", "T1")}
    assert outcome(result, "S1") == "PENDING"


def test_two_current_records_that_agree_are_fine() -> None:
    result = one_tract([*closed_exams("S1"), exam("S1", "T1", "FU6")], healed_reads("S1"))
    assert conflict_types(result) == set()
    assert outcome(result, "S1") == "CLOSED"


# primary.closure: three-valued --------------------------------------------------------------


@pytest.mark.parametrize(
    ("clinical", "mri", "expected"),
    [
        ("CLOSED", "HEALED", "CLOSED"),
        ("CLOSED", "NOT_HEALED", "NOT_CLOSED"),
        ("CLOSED", None, "PENDING"),
        ("NOT_CLOSED", "HEALED", "NOT_CLOSED"),
        ("NOT_CLOSED", "NOT_HEALED", "NOT_CLOSED"),
        ("NOT_CLOSED", None, "NOT_CLOSED"),  # decided as soon as one side is not closed
        (None, "HEALED", "PENDING"),
        (None, "NOT_HEALED", "NOT_CLOSED"),
        (None, None, "PENDING"),
    ],
)
def test_primary_closure_truth_table(clinical: str | None, mri: str | None, expected: str) -> None:
    frame = pl.DataFrame(
        {"clinical": [clinical], "mri": [mri]}, schema={"clinical": pl.String, "mri": pl.String}
    )
    assert frame.select(closure(pl.col("clinical"), pl.col("mri")).alias("o"))["o"][0] == expected


def test_one_side_not_closed_decides_even_while_the_other_is_in_conflict() -> None:
    exams = [
        exam("S1", "T1", "INJ1", "OPEN", True, 2),
        exam("S1", "T1", "FU5", "OPEN", True, 2),
        exam("S1", "T1", "FU6", "OPEN", True, 2),
    ]
    result = one_tract(exams, [read("S1", "T1", "R1"), read("S1", "T1", "R2", t2=True)])
    assert outcome(result, "S1") == "NOT_CLOSED"
    assert conflict_types(result) == {("READER_DISAGREEMENT", "S1", "T1")}  # raised even so


def test_sustained_closure_with_mri_not_healed_is_discordant() -> None:
    result = one_tract(closed_exams("S1"), [read("S1", "T1", r, t2=True) for r in ("R1", "R2")])
    assert outcome(result, "S1") == "NOT_CLOSED"
    assert conflict_types(result) == {("CLINICAL_MRI_DISCORDANCE", "S1", "T1")}


# discharge.improved --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "final", "improved"),
    [(3, 2, True), (2, 2, False), (1, 2, False), (None, 0, None), (2, None, None)],
)
def test_discharge_improved(baseline: int | None, final: int | None, improved: bool | None) -> None:
    exams = [
        exam("S1", "T1", "INJ1", "OPEN", True, baseline),
        exam("S1", "T1", "FU5", "OPEN", True, 2),
        exam("S1", "T1", "FU6", "OPEN", True, final),
    ]
    result = one_tract(exams, [read("S1", "T1", r, t2=True) for r in ("R1", "R2")])
    assert outcome(result, "S1", column="discharge_improved") is improved


def test_discharge_min_drop_comes_from_the_rule_set() -> None:
    exams = [
        exam("S1", "T1", "INJ1", "OPEN", True, 3),
        exam("S1", "T1", "FU5", "OPEN", True, 2),
        exam("S1", "T1", "FU6", "OPEN", True, 2),
    ]
    two = rules(discharge={"min_drop": 2})
    result = one_tract(exams, [read("S1", "T1", r, t2=True) for r in ("R1", "R2")], rule_set=two)
    assert outcome(result, "S1", column="discharge_improved") is False


# patient.category ---------------------------------------------------------------------------


def test_patient_categories() -> None:
    not_healed = [
        read(s, t, r, t2=True)
        for s, t in (("S2", "T2"), ("S3", "T1"), ("S4", "T1"))
        for r in ("R1", "R2")
    ]
    open_exams = lambda s, t, g0=2, g6=2: [  # noqa: E731
        exam(s, t, "INJ1", "OPEN", True, g0),
        exam(s, t, "FU5", "OPEN", True, g6),
        exam(s, t, "FU6", "OPEN", True, g6),
    ]
    ev = evidence(
        [
            subject("S1"),
            subject("S2"),
            subject("S3"),
            subject("S4"),
            subject("S5", "WITHDRAWN"),
            subject("S6", "ENROLLED"),
        ],
        [
            tract("S1"),
            tract("S1", "T2", treated=False),
            tract("S2"),
            tract("S2", "T2"),
            tract("S3"),
            tract("S4"),
            tract("S5"),
            tract("S6"),
        ],
        [
            *closed_exams("S1"),
            *closed_exams("S2"),
            *open_exams("S2", "T2"),
            *open_exams("S3", "T1", 3, 1),
            *open_exams("S4", "T1"),
        ],
        [*healed_reads("S1"), *healed_reads("S2"), *not_healed],
    )
    result = run(ev)
    categories = dict(result.patients.select("subject_id", "category").iter_rows())
    assert categories == {
        "S1": "FULL_CLOSURE",  # the untreated T2 does not count
        "S2": "IMPROVED",  # one of two closed
        "S3": "IMPROVED",  # none closed, discharge improved
        "S4": "RESISTANT",
        "S5": "WITHDRAWN",
        "S6": "PENDING",
    }
    assert (
        conflict_types(result) == set()
    )  # withdrawn and ongoing subjects raise no missing assessments


def test_a_pending_tract_makes_the_patient_pending() -> None:
    ev = evidence(
        [subject("S1")],
        [tract("S1"), tract("S1", "T2")],
        [*closed_exams("S1"), *closed_exams("S1", "T2")],
        [*healed_reads("S1"), read("S1", "T2", "R1"), read("S1", "T2", "R2", t2=True)],
    )
    assert dict(run(ev).patients.select("subject_id", "category").iter_rows()) == {"S1": "PENDING"}


# sensitivity definitions --------------------------------------------------------------------


def test_admire_ignores_t2_and_uses_one_visit() -> None:
    exams = [
        exam("S1", "T1", "INJ1", "OPEN", True, 2),
        exam("S1", "T1", "FU5", "OPEN", True, 1),
        exam("S1", "T1", "FU6"),
    ]
    reads = [read("S1", "T1", r, t2=True, collection=[10.0, 5.0, 5.0]) for r in ("R1", "R2")]
    result = one_tract(exams, reads)
    assert outcome(result, "S1") == "NOT_CLOSED"
    assert outcome(result, "S1", column="admire_outcome") == "CLOSED"
    assert outcome(result, "S1", column="clinical_only_outcome") == "NOT_CLOSED"
    assert result.patients["response_50"][0] is True


@pytest.mark.parametrize(
    ("reads", "primary"),
    [
        ([read("S1", "T1", r, t2=True) for r in ("R1", "R2")], "NOT_CLOSED"),  # MRI not healed
        ([read("S1", "T1", "R1"), read("S1", "T1", "R2", t2=True)], "PENDING"),  # MRI undecided
    ],
)
def test_clinical_only_ignores_the_mri(reads: list[dict], primary: str) -> None:
    result = one_tract(closed_exams("S1"), reads)
    assert outcome(result, "S1") == primary
    assert outcome(result, "S1", column="clinical_only_outcome") == "CLOSED"
    assert result.patients["clinical_only_category"][0] == "FULL_CLOSURE"


@pytest.mark.parametrize(("closed", "treated", "responds"), [(1, 2, True), (1, 3, False)])
def test_response_50_counts_exactly_half_as_a_response(
    closed: int, treated: int, responds: bool
) -> None:
    tracts = [f"T{k}" for k in range(1, treated + 1)]
    exams = [e for t in tracts[:closed] for e in closed_exams("S1", t)] + [
        exam("S1", t, v, "OPEN", True, 2) for t in tracts[closed:] for v in ("INJ1", "FU5", "FU6")
    ]
    ev = evidence(
        [subject("S1")], [tract("S1", t) for t in tracts], exams,
        [r for t in tracts for r in healed_reads("S1", t)],
    )  # fmt: skip
    assert run(ev).patients["response_50"][0] is responds


def test_response_50_is_unknown_while_a_tract_is_unknown_at_the_primary_visit() -> None:
    ev = evidence(
        [subject("S1")],
        [tract("S1"), tract("S1", "T2"), tract("S1", "T3")],
        [*closed_exams("S1"), exam("S1", "T2", "FU6", "OPEN", True, 1)],
        [],
    )
    assert run(ev).patients["response_50"][0] is None  # 1 of 3 closed, T3 unknown: 1 or 2 of 3


# conflicts: scope, identity ------------------------------------------------------------------


def test_the_latest_of_several_decisions_on_one_tract_wins() -> None:
    """Two conflicts on one tract, decided differently: the later decision is the committee's
    last word on the tract, whatever order the decisions sit in."""
    exams = [*closed_exams("S1"), exam("S1", "T1", "FU2", "CLOSED", True, 1)]  # contradictory
    ev = evidence(
        [subject("S1")],
        [tract("S1")],
        exams,
        [read("S1", "T1", r, t2=True) for r in ("R1", "R2")],  # discordant
    )
    base = run(ev)
    inconsistent = conflict_row(base, "INCONSISTENT_EXAM", "S1")
    discordance = conflict_row(base, "CLINICAL_MRI_DISCORDANCE", "S1")
    early = decision(inconsistent, "NOT_EVALUABLE", STAMP + timedelta(days=1), offset=900)
    late = decision(discordance, "CLOSED", STAMP + timedelta(days=2), offset=901)
    for decisions in ([early, late], [late, early]):
        result = run(ev, decisions=decisions)
        assert outcome(result, "S1") == "CLOSED"
        assert outcome(result, "S1", column="decision_id") == late["decision_id"]
    same_time = decision(discordance, "NOT_CLOSED", early["decided_at"], offset=950)
    result = run(ev, decisions=[same_time, early])  # a tie: the later in the log wins
    assert outcome(result, "S1") == "NOT_CLOSED"


def test_a_later_decision_on_one_conflict_supersedes() -> None:
    ev = evidence(
        [subject("S1")],
        [tract("S1")],
        closed_exams("S1"),
        [read("S1", "T1", r, t2=True) for r in ("R1", "R2")],
    )
    discordance = conflict_row(run(ev), "CLINICAL_MRI_DISCORDANCE", "S1")
    first = decision(discordance, "CLOSED", STAMP + timedelta(days=1), offset=900)
    second = decision(discordance, "NOT_EVALUABLE", STAMP + timedelta(days=2), offset=901)
    assert outcome(run(ev, decisions=[second, first]), "S1") == "NOT_EVALUABLE"


def test_withdrawn_subjects_raise_no_conflicts() -> None:
    exams = [exam("S1", "T1", "INJ1", "CLOSED", True, 2), exam("S1", "T9", "INJ2")]
    result = one_tract(
        exams, [read("S1", "T1", "R1"), read("S1", "T1", "R2", t2=True)], status="WITHDRAWN"
    )
    assert conflict_types(result, status=None) == set()


def test_unmatched_tract_is_raised_never_dropped() -> None:
    result = one_tract(
        [*closed_exams("S1"), exam("S1", "T9", "FU2", "OPEN", True, 1)], healed_reads("S1")
    )
    assert conflict_types(result) == {("UNMATCHED_TRACT", "S1", "T9")}
    assert "T9" not in result.tracts["tract_id"].to_list()


def test_conflict_ids_are_stable_and_fingerprints_follow_the_inputs() -> None:
    reads = [read("S1", "T1", "R1", event_id="r1"), read("S1", "T1", "R2", t2=True, event_id="r2")]
    first = one_tract(closed_exams("S1"), reads).conflicts
    again = one_tract(closed_exams("S1"), reads).conflicts
    changed = one_tract(
        closed_exams("S1"), [reads[0], read("S1", "T1", "R2", t2=True, event_id="r2b")]
    ).conflicts
    assert first["conflict_id"].to_list() == again["conflict_id"].to_list()
    assert first["fingerprint"].to_list() == again["fingerprint"].to_list()
    assert first["conflict_id"].to_list() == changed["conflict_id"].to_list()
    assert first["fingerprint"].to_list() != changed["fingerprint"].to_list()


def test_decisions_record_rule_set_and_inputs() -> None:
    subject_row, tract_row = subject("S1"), tract("S1")
    exams, reads = closed_exams("S1"), healed_reads("S1")
    result = run(evidence([subject_row], [tract_row], exams, reads))
    row = result.tracts.row(0, named=True)
    assert (row["rule_set"], row["rule_set_version"]) == ("exosome-fistula-protocol", 2)
    assert row["decided_by"] == "RULE"
    # subject, tract, the exams the rules read (INJ1, FU5, FU6; not FU4), two final reads:
    # by id, and each in its role
    read_exams = {e["visit"]: e["event_id"] for e in exams}
    expected = [
        subject_row["event_id"],
        tract_row["event_id"],
        read_exams["INJ1"],
        read_exams["FU5"],
        read_exams["FU6"],
        reads[0]["event_id"],
        reads[1]["event_id"],
    ]
    assert used_event_ids(row) == sorted(expected)
    assert "FU4" in read_exams and read_exams["FU4"] not in used_event_ids(row)
    assert (row["subject_event_id"], row["tract_event_id"]) == (
        subject_row["event_id"],
        tract_row["event_id"],
    )
    assert sorted(row["clinical_event_ids"]) == sorted([read_exams["FU5"], read_exams["FU6"]])
    # the discharge baseline (INJ1); FU6's exam is already among the confirmation visits
    assert row["discharge_event_ids"] == [read_exams["INJ1"]]
    assert (row["r1_event_id"], row["r2_event_id"], row["adj_event_id"]) == (
        reads[0]["event_id"],
        reads[1]["event_id"],
        None,
    )


@pytest.mark.parametrize("engine", ["in-memory", "streaming"])
def test_tract_rules_keep_the_rows_and_order_of_the_tracts_given(engine: str) -> None:
    """The engine sets the rules' results side by side, so each must return one row per tract
    it was given, in the order given (a shuffled order here, many tracts so joins split)."""
    subjects = [f"S{i:03d}" for i in range(400)]
    ev = evidence(
        [subject(s) for s in subjects],
        [tract(s, t) for s in subjects for t in ("T1", "T2")],
        [e for s in subjects for e in closed_exams(s)],
        [r for s in subjects for r in healed_reads(s)],
    )
    keys = (
        ev.tracts.select("subject_id", "tract_id")
        .collect()
        .sample(fraction=1.0, shuffle=True, seed=3)
    )
    visits = visit_status(ev.exams)
    for result in pl.collect_all(
        [
            clinical_sustained(keys.lazy(), visits, load_ruleset()),
            mri_consensus(keys.lazy(), ev.reads, load_ruleset()),
            discharge_improved(keys.lazy(), visits, load_ruleset()),
        ],
        engine=engine,
    ):
        assert result.select("subject_id", "tract_id").equals(keys)
