"""Where the protocol is silent: visit windows, visits out of date order, reader independence
and completers without a treated tract, each through the real engine."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

import schemas
from services.adjudicator.report import build_report, completer_table
from services.adjudicator.rules.patient import CATEGORIES
from services.adjudicator.ruleset import load_ruleset
from tests.adjudicator.builders import (
    DAY0,
    closed_exams,
    conflict_row,
    conflict_types,
    evidence,
    exam,
    healed_reads,
    injection,
    outcome,
    read,
    rules,
    run,
    subject,
    tract,
)


def day(n: int):
    return DAY0 + timedelta(days=n)


def one_tract(exams: list[dict], reads: list[dict], injections: list[dict] = (), rule_set=None):  # type: ignore[assignment]
    ev = evidence([subject("S1")], [tract("S1")], exams, reads, injections=list(injections))
    return run(ev, rule_set)


def types(result) -> set[str]:
    return {t for t, _, _ in conflict_types(result)}


# Visit windows ------------------------------------------------------------------------------


def test_an_fu6_exam_on_day_200_is_out_of_window_and_excluded_by_in_window() -> None:
    exams = [*closed_exams("S1")[:-1], exam("S1", "T1", "FU6", exam_date=day(200))]
    result = one_tract(exams, healed_reads("S1"))
    row = conflict_row(result, "OUT_OF_WINDOW", "S1")
    assert row["about"] == "FU6"
    assert "study day 200" in row["detail"] and "days 293 to 307" in row["detail"]
    # FU5 on day 270 after FU6 on day 200: the dates are out of order too.
    assert types(result) == {"OUT_OF_WINDOW", "VISIT_ORDER"}
    assert outcome(result, "S1", column="in_window_outcome") == "PENDING"  # FU6 left out


def test_a_final_mri_scanned_on_day_30_is_out_of_window() -> None:
    reads = [read("S1", "T1", r, scan_date=day(30)) for r in ("R1", "R2")]
    result = one_tract(closed_exams("S1"), reads)
    assert conflict_row(result, "OUT_OF_WINDOW", "S1")["about"] == "MRI_FINAL"
    assert outcome(result, "S1") == "CLOSED"  # the primary counts it; the committee judges
    assert outcome(result, "S1", column="in_window_outcome") == "PENDING"  # no MRI in window
    report = build_report(
        result.tracts,
        result.patients,
        result.conflicts,
        pl.DataFrame(schema=schemas.polars_schema(schemas.contract("pathology_report"))),
        level=0.95,
        meta={},
    )
    assert report["tracts"]["closed"] == 1
    assert report["sensitivity"]["IN_WINDOW"]["tracts"]["closed"] == 0


@pytest.mark.parametrize(
    ("visit", "study_day", "inside"),
    [
        ("FU6", 293, True),
        ("FU6", 292, False),
        ("FU6", 307, True),
        ("FU6", 308, False),
        ("FU5", 263, True),
        ("FU5", 262, False),
        ("FU5", 277, True),
        ("FU5", 278, False),
        ("INJ1", 7, True),  # the discharge baseline: day 0 is the INJ1 injection here
        ("INJ1", 8, False),
    ],
)
def test_visit_window_edges(visit: str, study_day: int, inside: bool) -> None:
    exams = [e for e in closed_exams("S1") if e["visit"] != visit]
    exams.append(exam("S1", "T1", visit, "OPEN", True, 2, exam_date=day(study_day)))
    result = one_tract(exams, healed_reads("S1"), [injection("S1")])
    assert result.visits.filter(pl.col("visit") == visit)["in_window"].to_list() == [inside]
    breaches = result.conflicts.filter(pl.col("type") == "OUT_OF_WINDOW")["about"].to_list()
    assert breaches == ([] if inside else [visit])


@pytest.mark.parametrize(
    ("study_day", "inside"), [(286, True), (285, False), (314, True), (315, False)]
)
def test_final_mri_window_edges(study_day: int, inside: bool) -> None:
    reads = [read("S1", "T1", r, scan_date=day(study_day)) for r in ("R1", "R2")]
    result = one_tract(closed_exams("S1"), reads)
    assert ("OUT_OF_WINDOW" in types(result)) is not inside


def test_day_zero_is_the_inj1_injection_else_the_inj1_exam() -> None:
    exams = closed_exams("S1")  # INJ1 exam on DAY0, FU6 on day 300
    # Injected 10 days after the INJ1 exam: FU6 falls on study day 290, before its window.
    late_start = one_tract(exams, healed_reads("S1"), [injection("S1", administered_on=day(10))])
    fu6 = late_start.visits.filter(pl.col("visit") == "FU6")
    assert fu6["in_window"].to_list() == [False]
    assert "OUT_OF_WINDOW" in types(late_start)
    # No injection recorded: day 0 is the INJ1 exam, and FU6 is on time.
    assert "OUT_OF_WINDOW" not in types(one_tract(exams, healed_reads("S1")))


def test_without_a_day_zero_nothing_is_flagged() -> None:
    exams = closed_exams("S1")[1:]  # no INJ1 exam, no injection
    result = one_tract(exams, [read("S1", "T1", r, scan_date=day(30)) for r in ("R1", "R2")])
    assert result.visits["in_window"].null_count() == result.visits.height
    assert "OUT_OF_WINDOW" not in types(result)


def test_an_out_of_window_visit_no_outcome_reads_is_flagged_not_a_conflict() -> None:
    exams = [*closed_exams("S1"), exam("S1", "T1", "FU2", exam_date=day(100))]
    reads = [*healed_reads("S1"), read("S1", "T1", "R1", timepoint="MRI_BL", scan_date=day(-40))]
    result = one_tract(exams, reads)
    assert result.visits.filter(pl.col("visit") == "FU2")["in_window"].to_list() == [False]
    assert conflict_types(result) == set()


def test_windows_come_from_the_rule_set() -> None:
    exams = [*closed_exams("S1")[:-1], exam("S1", "T1", "FU6", exam_date=day(310))]
    assert "OUT_OF_WINDOW" in types(one_tract(exams, healed_reads("S1")))
    base = rules()
    wider = tuple(
        type(w)(w.name, w.day, w.early, 14) if w.name == "FU6" else w for w in base.windows
    )
    assert "OUT_OF_WINDOW" not in types(
        one_tract(exams, healed_reads("S1"), rule_set=rules(windows=wider))
    )


def test_out_of_window_on_an_untreated_tract_raises_nothing() -> None:
    ev = evidence(
        [subject("S1")],
        [tract("S1", treated=False)],
        [*closed_exams("S1")[:-1], exam("S1", "T1", "FU6", exam_date=day(200))],
        healed_reads("S1"),
    )
    assert conflict_types(run(ev), status=None) == set()


# Visits out of date order ------------------------------------------------------------------


@pytest.mark.parametrize("fu5_day", [303, 300])  # after FU6, or on the same day
def test_fu5_dated_after_fu6_is_a_data_query_not_a_discordance(fu5_day: int) -> None:
    exams = [
        exam("S1", "T1", "INJ1", "OPEN", True, 2),
        exam("S1", "T1", "FU5", exam_date=day(fu5_day)),
        exam("S1", "T1", "FU6", exam_date=day(300)),
    ]
    result = one_tract(exams, healed_reads("S1"))
    assert outcome(result, "S1", column="clinical") is None
    assert outcome(result, "S1") == "PENDING"
    assert "FU6 (" in conflict_row(result, "VISIT_ORDER", "S1")["detail"]
    assert "CLINICAL_MRI_DISCORDANCE" not in types(result)


def test_visits_out_of_order_do_not_hide_a_visit_that_is_not_closed() -> None:
    exams = [
        exam("S1", "T1", "INJ1", "OPEN", True, 2),
        exam("S1", "T1", "FU5", exam_date=day(303)),
        exam("S1", "T1", "FU6", "OPEN", True, 1, exam_date=day(300)),
    ]
    result = one_tract(exams, [read("S1", "T1", r, t2=True) for r in ("R1", "R2")])
    assert outcome(result, "S1") == "NOT_CLOSED"
    assert "VISIT_ORDER" in types(result)  # raised whether or not it changes the outcome


def test_the_gap_uses_the_dates_every_record_allows() -> None:
    """FU6 entered twice, 10 days apart: 20 or 30 days after FU5. Which record is right
    decides sustained closure, so the tract waits (INCONSISTENT_EXAM) for the committee."""
    exams = [
        exam("S1", "T1", "INJ1", "OPEN", True, 2),
        exam("S1", "T1", "FU5", exam_date=day(270)),
        exam("S1", "T1", "FU6", exam_date=day(290)),
        exam("S1", "T1", "FU6", exam_date=day(300)),
    ]
    result = one_tract(exams, healed_reads("S1"))
    assert outcome(result, "S1", column="clinical") is None
    assert "exam date" in conflict_row(result, "INCONSISTENT_EXAM", "S1")["detail"]
    # Both readings at least 28 days apart: sustained, whichever record is right.
    apart = [*exams[:2], exams[2] | {"exam_date": day(298)}, exams[3]]
    assert outcome(one_tract(apart, healed_reads("S1")), "S1", column="clinical") == "CLOSED"
    # 20 or exactly 28 days apart: one reading is sustained, so still undecided.
    edge = [*exams[:3], exams[3] | {"exam_date": day(298)}]
    assert outcome(one_tract(edge, healed_reads("S1")), "S1", column="clinical") is None
    # Both readings less than 28 days apart: not sustained, whichever record is right.
    close = [*exams[:2], exams[2], exams[3] | {"exam_date": day(295)}]
    assert outcome(one_tract(close, healed_reads("S1")), "S1", column="clinical") == "NOT_CLOSED"


# Reader independence -----------------------------------------------------------------------


def test_r1_and_r2_by_the_same_reader_are_not_two_independent_reads() -> None:
    reads = [read("S1", "T1", "R1"), read("S1", "T1", "R2", reader_id="RAD-A")]
    result = one_tract(closed_exams("S1"), reads)
    assert outcome(result, "S1", column="mri") is None
    assert outcome(result, "S1") == "PENDING"
    assert types(result) == {"READER_NOT_INDEPENDENT"}
    assert "same reader" in outcome(result, "S1", column="mri_basis")


def test_an_independent_adjudicator_decides_when_r1_and_r2_are_one_reader() -> None:
    reads = [
        read("S1", "T1", "R1"),
        read("S1", "T1", "R2", reader_id="RAD-A"),
        read("S1", "T1", "ADJ", t2=True),
    ]
    result = one_tract(closed_exams("S1"), reads)
    assert outcome(result, "S1", column="mri_basis") == "adjudicator read"
    assert outcome(result, "S1") == "NOT_CLOSED"
    assert "READER_NOT_INDEPENDENT" in types(result)


def test_an_adjudicator_who_was_a_primary_reader_does_not_decide() -> None:
    reads = [
        read("S1", "T1", "R1"),
        read("S1", "T1", "R2", t2=True),
        read("S1", "T1", "ADJ", reader_id="RAD-B"),  # R2's reader
    ]
    result = one_tract(closed_exams("S1"), reads)
    assert outcome(result, "S1") == "PENDING"
    assert types(result) == {"READER_DISAGREEMENT", "READER_NOT_INDEPENDENT"}


# Completers without a treated tract ---------------------------------------------------------


def test_a_completer_without_a_treated_tract_is_counted_so_the_table_adds_up() -> None:
    ev = evidence(
        [subject("S1"), subject("S2")],
        [tract("S1"), tract("S2", treated=False)],
        closed_exams("S1"),
        healed_reads("S1"),
    )
    result = run(ev)
    table = completer_table(result.patients, "category", 0.95)
    assert (table["n"], table["FULL_CLOSURE"], table["NOT_EVALUABLE"]) == (2, 1, 1)
    assert sum(table[c] for c in CATEGORIES) == table["n"]
    assert sum(table["percent"][c] for c in CATEGORIES) == 100.0


def test_a_rule_set_without_windows_checks_none() -> None:
    v1 = load_ruleset(schemas.rules_path(1))
    assert (v1.version, v1.windows) == (1, ())
    exams = [*closed_exams("S1")[:-1], exam("S1", "T1", "FU6", exam_date=day(200))]
    result = one_tract(exams, healed_reads("S1"), rule_set=v1)
    assert result.visits["in_window"].null_count() == result.visits.height
    assert "OUT_OF_WINDOW" not in types(result)
