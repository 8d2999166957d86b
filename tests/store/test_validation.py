"""The GX gate on hand-built frames: positions against the cut, duplicates, completeness."""

from __future__ import annotations

from typing import Any

import polars as pl

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
