"""The GX gate on hand-built frames: positions against the cut, duplicates, completeness."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from services.lock.validation import load_suite, validate_frames

SUITE_ONLY_POSITIONS: dict[str, Any] = {
    "name": "positions",
    "version": 1,
    "checks": [c for c in load_suite()["checks"] if c["frame"] in ("positions", "events/*")],
}


def _events(offsets: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"offset": offsets, "event_id": [f"e{o}" for o in offsets]})


def test_a_kind_without_events_needs_no_position() -> None:
    """A trial with no committee decisions has no such topic in the log, hence no position."""
    frames = {
        "events/conflict_change": _events([0, 1, 2]),
        "events/committee_decision": _events([]),
    }
    report = validate_frames(frames, {"positions": {"conflict_change": 3}}, SUITE_ONLY_POSITIONS)
    assert report.success, report.summary()


def test_events_after_the_cut_or_repeated_are_reported() -> None:
    frames = {"events/conflict_change": _events([0, 1, 1, 7])}
    report = validate_frames(frames, {"positions": {"conflict_change": 3}}, SUITE_ONLY_POSITIONS)
    failed = sorted((f.frame, f.expectation) for f in report.failures)
    assert failed == [
        ("events/conflict_change", "expect_column_values_to_be_unique"),
        ("events/conflict_change", "expect_column_values_to_be_unique"),
        ("positions", "expect_column_pair_values_a_to_be_greater_than_b"),
    ]
    assert "e.g. (3, 8)" in str(report.failures[-1])  # the cut, and offset 7 + 1


def test_a_value_set_read_from_the_snapshot_reports_with_the_suites_names() -> None:
    """Referential checks carry thousands of ids; their failures still name the suite's
    expectation, the frame, the check's about and examples of the rows at fault."""
    registry = pl.DataFrame(
        {"subject_id": [f"S{i:04d}" for i in range(3000)], "tract_id": ["T1"] * 3000}
    )
    outcomes = pl.DataFrame({"subject_id": ["S0001", "S9998", "S9999"], "tract_id": ["T1"] * 3})
    suite: dict[str, Any] = {
        "name": "referential",
        "version": 2,
        "checks": [
            {
                "about": "outcome rows belong to registry tracts",
                "frame": "tract_outcomes",
                "expect": [
                    {
                        "expect_column_values_to_be_in_set": {
                            "column": "subject_tract",
                            "value_set": {"from": "registry", "column": "subject_tract"},
                        }
                    }
                ],
            }
        ],
    }
    frames = {"tract_outcomes": outcomes, "registry": registry}
    for _ in range(2):  # the second run reuses the process's GX session
        report = validate_frames(frames, {}, suite)
        assert report.evaluated == 1
        [failure] = report.failures
        assert str(failure) == (
            "tract_outcomes: expect_column_values_to_be_in_set(column=subject_tract, "
            "value_set=<3000 values>): 2 of 3 rows unexpected, e.g. 'S9998/T1', 'S9999/T1' "
            "[outcome rows belong to registry tracts]"
        )
    registry_ok = registry.vstack(outcomes.tail(2))
    assert validate_frames({"tract_outcomes": outcomes, "registry": registry_ok}, {}, suite).success


def test_value_set_expectations_give_gx_the_configuration_of_its_own_classes() -> None:
    """The gate's value-set classes hand a set of plain values out as it is, never copied
    (GX reads an expectation's configuration some 70 times a run, and deep-copies it);
    what GX gets must be what its own class gives."""
    import copy
    from datetime import date

    import great_expectations as gx

    from services.lock.gate import VALUE_SET_EXPECTATIONS, _value_sets, session, suite_name

    classes = session().classes
    assert sorted(classes) == sorted(
        getattr(gx.expectations, name).expectation_type for name in VALUE_SET_EXPECTATIONS
    )
    for name, fast in classes.items():
        stock = getattr(gx.expectations, "".join(p.capitalize() for p in name.split("_")))
        for values in (["S1", "S2", None, 3, 4.5, True], [date(2026, 1, 2), ("a", 1)]):
            given = _value_sets({"column": "c", "value_set": values})
            mine = fast(**given).configuration
            theirs = stock(column="c", value_set=values).configuration
            assert suite_name(mine.type) == theirs.type
            assert mine.kwargs == theirs.kwargs
            assert mine.to_json_dict() | {"type": theirs.type} == theirs.to_json_dict()
            plain = values[0] == "S1"
            assert (mine.kwargs["value_set"] is given["value_set"]) is plain
            assert (copy.deepcopy(mine.kwargs)["value_set"] is given["value_set"]) is plain


def test_text_as_pyarrow_strings_gives_the_results_of_pandas_own_conversion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gate hands GX text as pyarrow strings (membership tests in one call); every kind of
    expectation the suite uses must find the same rows as on Polars' default conversion."""
    from services.lock import gate
    from services.lock.validation import _plain

    frame = pl.DataFrame(
        {
            "id": ["a", "b", "b", None, "e", "f"],
            "site": ["S1", "S1", "S1", "S2", None, "S9"],
            "grade": [0, 4, 7, None, 2, -1],
            "low": [1, 2, 3, 4, None, 6],
            "high": [1, 3, 2, 4, 5, None],
        }
    )
    known = [f"x{i}" for i in range(500)] + ["a", "b", "e"]
    specs: list[tuple[str, dict[str, Any]]] = [
        ("expect_column_values_to_not_be_null", {"column": "id"}),
        ("expect_column_values_to_be_in_set", {"column": "id", "value_set": known}),
        ("expect_column_values_to_be_in_set", {"column": "site", "value_set": ["S1", "S2"]}),
        ("expect_column_values_to_be_between", {"column": "grade", "min_value": 0, "max_value": 4}),
        ("expect_column_values_to_be_unique", {"column": "id"}),
        ("expect_compound_columns_to_be_unique", {"column_list": ["id", "site"]}),
        (
            "expect_column_pair_values_a_to_be_greater_than_b",
            {"column_A": "high", "column_B": "low", "or_equal": True},
        ),
        ("expect_column_pair_values_to_be_equal", {"column_A": "low", "column_B": "high"}),
    ]

    def outcomes() -> list[tuple[Any, ...]]:
        with gate.gate() as run:
            results = run(frame, specs, "SUMMARY").results
        return [
            (
                r.success,
                r.result.get("unexpected_count"),
                sorted(map(repr, map(_plain, r.result.get("partial_unexpected_list") or []))),
            )
            for r in results
        ]

    arrow = outcomes()
    monkeypatch.setattr(gate, "to_pandas", lambda f: f.to_pandas())
    assert arrow == outcomes()
    assert [success for success, _, _ in arrow] == [False] * len(specs)
    assert arrow[0] == (False, 1, ["None"])  # a missing id, said as such


def test_the_gate_never_fingerprints_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """GX hashes every row of a batch for its batch markers, which the gate never reads."""
    from great_expectations.execution_engine import pandas_execution_engine

    from services.lock.gate import gate

    def hashed(frame: Any) -> str:
        raise AssertionError("the gate fingerprinted a batch")

    monkeypatch.setattr(pandas_execution_engine, "hash_pandas_dataframe", hashed)
    frame = pl.DataFrame({"subject_id": ["S1", "S2", None]})
    with gate() as run:
        result = run(
            frame, [("expect_column_values_to_not_be_null", {"column": "subject_id"})], "SUMMARY"
        )
    assert not result.success
    assert result.results[0].result["unexpected_count"] == 1
