"""The visibility policy on small hand-built frames: which role sees which field, the reader
scrub's normalisation, rejected rows, result frames and the report's efficacy figures."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import polars as pl
import pytest

from services.roles import ROLES
from services.web.visibility import (
    BLINDED_READER,
    HIDDEN,
    REPORT_ALWAYS,
    WITHHELD,
    Scrubber,
    VisiblePlatform,
    blind_frame,
    normalise,
    policy_for,
)

COMMITTEE = policy_for("committee")
MONITOR = policy_for("monitor")
SCRUB = Scrubber(frozenset({"RAD-A", "RAD-AB", "Dr_Ng 2"}))


def test_every_role_has_a_policy_and_an_unknown_role_gets_the_strictest() -> None:
    assert set(HIDDEN) == set(ROLES)
    assert policy_for("auditor").hidden == COMMITTEE.hidden and not policy_for(None).sees_results
    assert COMMITTEE.blinds_readers and not MONITOR.blinds_readers
    assert not COMMITTEE.sees_results and MONITOR.sees_results
    assert policy_for("committee", committee_sees_results=True).sees_results
    assert policy_for("committee", committee_sees_results=True).blinds_readers


@pytest.mark.parametrize(
    "text",
    [
        "RAD-A",
        "rad-a",
        "RAD_A",
        "Rad A",
        "RADA",
        "r.a.d.-a",
        "rad\u2013a",  # en dash
        "\uff32\uff21\uff24\uff0d\uff21",  # full-width RAD-A
        "(RAD-A)",
        "RAD-A's read",
    ],
)
def test_every_spelling_of_a_reader_is_scrubbed(text: str) -> None:
    scrubbed = SCRUB.text(f"per {text}, re-read")
    assert BLINDED_READER in scrubbed and "re-read" in scrubbed, scrubbed
    assert normalise("RAD-A") == normalise("r.a.d_a") == "rada"


def test_the_scrub_keeps_other_words_and_prefers_the_longest_identity() -> None:
    assert SCRUB.text("RADAR and xRAD-A stay") == "RADAR and xRAD-A stay"
    assert SCRUB.text("RAD-AB, RAD-A RAD-A; dr ng-2") == (
        f"{BLINDED_READER}, {BLINDED_READER} {BLINDED_READER}; {BLINDED_READER}"
    )
    assert SCRUB.text(None) is None
    assert Scrubber(frozenset()).text("RAD-A") == "RAD-A"  # nobody to scrub


def _injection() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "offset": [0],
            "event_id": ["e1"],
            "record_id": ["INJ-1"],
            "record_version": [2],
            "subject_id": ["S01"],
            "visit": ["INJ1"],
            "administered_on": [date(2024, 1, 8)],
            "volume_ml": [5.0],
            "entered_at": [datetime(2024, 1, 8, 15, tzinfo=UTC)],
            "entered_by": ["crc.okafor after RAD-A"],
            "change_reason": ["4 mL given, not 5"],
        }
    )


def test_hidden_fields_are_withheld_typed_and_text_scrubbed() -> None:
    frame = blind_frame("injection", _injection(), COMMITTEE, SCRUB)
    row = frame.row(0, named=True)
    assert (row["administered_on"], row["volume_ml"], row["entered_at"]) == (None, None, None)
    assert row["change_reason"] == WITHHELD
    assert dict(frame.schema) == {**dict(_injection().schema), "_shown_id": pl.String}
    assert row["entered_by"] == f"crc.okafor after {BLINDED_READER}"
    assert (row["record_id"], row["visit"]) == ("INJ-1", "INJ1")  # identifiers and codes kept
    assert blind_frame("injection", _injection(), MONITOR, SCRUB).equals(_injection())


def _rejected(source_kind: str, failing: str, raw: str, reason: str) -> dict:
    return {
        "offset": 0,
        "event_id": "r1",
        "source_kind": source_kind,
        "file": "rad-a.jsonl",
        "line": 3,
        "field": failing,
        "reason": reason,
        "raw": raw,
        "ingest_run": "run-1",
    }


def test_rejected_rows_follow_the_field_rules_of_their_source() -> None:
    rows = pl.DataFrame(
        [
            _rejected(
                "injection",
                "volume_ml",
                json.dumps({"record_id": "INJ-9", "volume_ml": "-4", "administered_on": "x"}),
                "volume_ml must be >= 0, got -4",
            ),
            _rejected(
                "mri_read",
                "reader_role",
                json.dumps({"read_id": "RD-1", "reader_id": "RAD-Z", "change_reason": "Rad A"}),
                "reader_role must be one of R1|R2|ADJ, got R9",
            ),
            _rejected("mri_read", "read_id", "not json at all RAD-A", "read_id is required"),
        ]
    )
    blinded = blind_frame("rejected_row", rows, COMMITTEE, SCRUB)
    injection, read, broken = blinded.to_dicts()
    assert json.loads(injection["raw"]) == {
        "record_id": "INJ-9",
        "volume_ml": WITHHELD,
        "administered_on": WITHHELD,
    }
    assert injection["reason"] == WITHHELD  # it quotes the hidden value
    assert json.loads(read["raw"]) == {
        "read_id": "RD-1",
        "reader_id": BLINDED_READER,
        "change_reason": BLINDED_READER,
    }
    assert read["reason"].endswith("got R9") and read["file"] == f"{BLINDED_READER}.jsonl"
    assert broken["raw"] == WITHHELD
    assert blind_frame("rejected_row", rows, MONITOR, SCRUB).equals(rows)


def test_result_frames_lose_the_readers_that_counted() -> None:
    tracts = pl.DataFrame(
        {"subject_id": ["S01"], "r1_reader": ["RAD-A"], "mri_basis": ["RAD-A and R2 agree"]}
    )
    row = blind_frame("tract_outcome", tracts, COMMITTEE, SCRUB).row(0, named=True)
    assert row == {
        "subject_id": "S01",
        "r1_reader": BLINDED_READER,
        "mri_basis": f"{BLINDED_READER} and R2 agree",
    }


class FakePlatform:
    """Just enough platform for a VisiblePlatform: one study, one read, one report."""

    rules = None

    def studies(self) -> list[str]:
        return ["X"]

    def records(
        self, kind: str, study: str, upto: object = None, subjects: object = None
    ) -> pl.LazyFrame:
        if kind == "mri_read":
            frame = pl.LazyFrame({"subject_id": ["S01"], "reader_id": ["RAD-A"]})
        else:
            frame = pl.LazyFrame(
                schema={"subject_id": pl.String, "source_kind": pl.String, "raw": pl.String}
            )
        return frame if subjects is None else frame.filter(pl.col("subject_id").is_in(subjects))

    def adjudicate(self, study: str) -> str:
        return "result"

    def outcomes(self, study: str, subjects: object = None, tables: object = None) -> str:
        return "result"

    def report(self, study: str, result: object = None) -> dict:
        return {k: k for k in (*REPORT_ALWAYS, "completers", "tracts", "a_future_section")}


def test_the_report_keeps_only_non_efficacy_sections_without_results() -> None:
    seen = VisiblePlatform(FakePlatform(), COMMITTEE)
    assert set(seen.report("X")) == set(REPORT_ALWAYS)  # a new section is hidden by default
    assert "a_future_section" in VisiblePlatform(FakePlatform(), MONITOR).report("X")
    assert seen.scrubber.reader_ids == frozenset({"RAD-A"})
    assert seen.records("mri_read", "X").collect()["reader_id"].to_list() == [BLINDED_READER]
    assert not hasattr(seen, "decide") and not hasattr(seen, "lock")  # read-only
