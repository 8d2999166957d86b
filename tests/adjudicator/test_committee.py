"""Committee decisions on the real platform: validation, overrides, supersession, reopening,
resolution by data, tract mapping, and the audit trail that keeps all of it."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from services.adjudicator.errors import (
    DecisionRefusedError,
    StaleReviewError,
    UnknownConflictError,
)
from services.demo.trial import DEMO_STUDY
from services.platform import Platform


@pytest.fixture
def platform(open_home: Path) -> Platform:
    """The demo trial ingested, no decision taken."""
    return Platform.embedded(open_home)


def conflict(platform: Platform, type_: str, subject: str, tract: str) -> dict:
    frame = platform.adjudicate(DEMO_STUDY).conflicts.filter(
        (pl.col("type") == type_)
        & (pl.col("subject_id") == subject)
        & (pl.col("tract_id") == tract)
    )
    assert frame.height == 1
    return frame.row(0, named=True)


def tract_row(platform: Platform, subject: str, tract: str) -> dict:
    tracts = platform.adjudicate(DEMO_STUDY).tracts
    return tracts.filter((pl.col("subject_id") == subject) & (pl.col("tract_id") == tract)).row(
        0, named=True
    )


def decide(platform: Platform, conflict_id: str, status: str | None = "CLOSED", **kw) -> dict:
    args = {
        "rationale": "ADJ read reviewed; the tract is healed.",
        "members": ["dr.a", "dr.b"],
        "recorded_by": "dr.a",
    }
    return platform.decide(conflict_id, status=status, **(args | kw))


def send_read(platform: Platform, folder: Path, **fields) -> None:
    base = {
        "read_id": "RD-S05-T2-FINAL-ADJ",
        "read_version": 1,
        "subject_id": "S05",
        "tract_id": "T2",
        "timepoint": "MRI_FINAL",
        "scan_date": "2024-12-01",
        "reader_id": "RAD-C",
        "reader_role": "ADJ",
        "image_quality": "ADEQUATE",
        "t2_hyperintense": False,
        "fibrotic": True,
        "contrast_given": True,
        "enhancement": False,
        "collection_mm": None,
        "read_at": "2024-12-10T10:00:00Z",
        "change_reason": None,
        "deleted": False,
    }
    folder.mkdir(exist_ok=True)
    path = folder / "mri_reads.jsonl"
    path.write_text(json.dumps(base | fields) + "\n")
    assert not platform.ingest(DEMO_STUDY, [path]).refused


def test_a_decision_overrides_the_rule_and_says_so(platform: Platform) -> None:
    c = conflict(platform, "READER_DISAGREEMENT", "S05", "T2")
    assert tract_row(platform, "S05", "T2")["outcome"] == "PENDING"
    decision = decide(platform, c["conflict_id"])
    row = tract_row(platform, "S05", "T2")
    assert (row["outcome"], row["rule_outcome"], row["decided_by"], row["decision_id"]) == (
        "CLOSED",
        "PENDING",
        "COMMITTEE",
        decision["decision_id"],
    )
    assert conflict(platform, "READER_DISAGREEMENT", "S05", "T2")["status"] == "DECIDED"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"rationale": "  "}, "rationale is required"),
        ({"members": ["dr.a"]}, "quorum not met: 1 deciding member"),
        ({"members": ["dr.a", "dr.a "]}, "quorum not met"),
        ({"status": "NEW_TRACT"}, "status must be one of CLOSED, NOT_CLOSED, NOT_EVALUABLE"),
    ],
)
def test_decisions_that_break_the_protocol_are_refused_and_nothing_is_written(
    platform: Platform, kw: dict, message: str
) -> None:
    c = conflict(platform, "READER_DISAGREEMENT", "S05", "T2")
    before = platform.source.positions()
    with pytest.raises(DecisionRefusedError, match=message):
        decide(platform, c["conflict_id"], **kw)
    assert platform.source.positions() == before


def test_unknown_conflict(platform: Platform) -> None:
    with pytest.raises(UnknownConflictError, match="no conflict C-000000000000"):
        decide(platform, "C-000000000000")


def test_a_later_decision_supersedes_and_both_stay_in_the_audit_trail(platform: Platform) -> None:
    c = conflict(platform, "CLINICAL_MRI_DISCORDANCE", "S13", "T3")
    first = decide(
        platform, c["conflict_id"], status="CLOSED", rationale="Fluid judged post-surgical."
    )
    second = decide(
        platform,
        c["conflict_id"],
        status="NOT_CLOSED",
        rationale="On review the collection persists.",
    )
    assert second["supersedes"] == first["decision_id"]
    assert tract_row(platform, "S13", "T3")["outcome"] == "NOT_CLOSED"
    trail = platform.audit(DEMO_STUDY).filter(pl.col("kind") == "committee_decision")
    mine = trail.filter(pl.col("what").str.contains(c["conflict_id"]))
    assert mine.select("action", "new_value", "why").rows() == [
        ("DECISION", "CLOSED", "Fluid judged post-surgical."),
        ("DECISION_SUPERSEDES", "NOT_CLOSED", "On review the collection persists."),
    ]
    assert mine["old_value"].to_list() == ["rule: NOT_CLOSED", f"superseded {first['decision_id']}"]
    assert all(w.startswith("dr.a for dr.a, dr.b") for w in mine["who"])


def test_a_decision_on_a_stale_review_is_refused(platform: Platform) -> None:
    c = conflict(platform, "CLINICAL_MRI_DISCORDANCE", "S13", "T3")
    reviewed = {"seen_fingerprint": c["fingerprint"], "seen_decision": ""}
    first = decide(platform, c["conflict_id"], status="CLOSED", **reviewed)
    with pytest.raises(StaleReviewError, match="another decision"):
        decide(platform, c["conflict_id"], status="NOT_CLOSED", **reviewed)
    with pytest.raises(StaleReviewError, match="the evidence changed"):
        decide(
            platform,
            c["conflict_id"],
            seen_fingerprint="an older fingerprint",
            seen_decision=first["decision_id"],
        )
    assert tract_row(platform, "S13", "T3")["outcome"] == "CLOSED"


def test_changed_inputs_reopen_a_decided_conflict(platform: Platform, tmp_path: Path) -> None:
    c = conflict(platform, "READER_DISAGREEMENT", "S05", "T2")
    decide(platform, c["conflict_id"])
    # The core lab corrects R2's read, still not healed: same conflict, new inputs.
    send_read(
        platform,
        tmp_path / "correction",
        read_id="RD-S05-T2-FINAL-R2",
        read_version=2,
        reader_id="RAD-B",
        reader_role="R2",
        t2_hyperintense=True,
        collection_mm=[12.0, 8.0, 4.0],
        change_reason="collection measured on review",
    )
    reopened = conflict(platform, "READER_DISAGREEMENT", "S05", "T2")
    assert reopened["conflict_id"] == c["conflict_id"]
    assert reopened["status"] == "OPEN"
    assert "inputs changed after decision" in reopened["reopened_reason"]
    assert tract_row(platform, "S05", "T2")["decided_by"] == "RULE"


def test_a_conflict_the_data_resolves_is_resolved(platform: Platform, tmp_path: Path) -> None:
    c = conflict(platform, "READER_DISAGREEMENT", "S05", "T2")
    send_read(platform, tmp_path / "adj")
    everything = platform.adjudicate(DEMO_STUDY).conflicts
    resolved = everything.filter(pl.col("conflict_id") == c["conflict_id"]).row(0, named=True)
    assert resolved["status"] == "RESOLVED"
    assert tract_row(platform, "S05", "T2")["outcome"] == "CLOSED"
    with pytest.raises(DecisionRefusedError, match="no longer holds"):
        decide(platform, c["conflict_id"])
    cleared = platform.audit(DEMO_STUDY).filter(
        (pl.col("kind") == "conflict") & (pl.col("action") == "CLEARED")
    )
    assert c["conflict_id"] in " ".join(cleared["what"])


def test_unmatched_tract_maps_to_a_registry_tract_or_a_new_fistula(platform: Platform) -> None:
    typo = conflict(platform, "UNMATCHED_TRACT", "S09", "T1X")
    with pytest.raises(DecisionRefusedError, match="--maps-to must name a registry tract of S09"):
        decide(platform, typo["conflict_id"], status=None, maps_to="T7")
    decide(platform, typo["conflict_id"], status=None, maps_to="T1")
    new = conflict(platform, "UNMATCHED_TRACT", "S10", "T9")
    decide(platform, new["conflict_id"], status="NEW_TRACT")
    result = platform.adjudicate(DEMO_STUDY)
    assert result.new_tracts.select("subject_id", "tract_id").rows() == [("S10", "T9")]
    assert "T9" not in result.tracts.filter(pl.col("subject_id") == "S10")["tract_id"].to_list()
    # The mapped FU2 exam now belongs to S09 T1 (it agrees with T1's own FU2 exam: no new conflict).
    visits = result.visits.filter(
        (pl.col("subject_id") == "S09") & (pl.col("tract_id") == "T1") & (pl.col("visit") == "FU2")
    )
    assert visits["records"][0] == 2 and not visits["inconsistent"][0]
