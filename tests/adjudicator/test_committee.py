"""Committee decisions on the real platform, made of signed votes: validation, overrides,
supersession, reopening, resolution by data, tract mapping, and the audit trail that keeps all
of it."""

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
from services.signatures import Credentials, SignatureRefusedError
from tests.signing import PASSWORD, directory, vote


@pytest.fixture
def platform(open_home: Path) -> Platform:
    """The demo trial ingested, no decision taken; committee members registered."""
    directory(open_home)
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


def decide(
    platform: Platform,
    conflict_id: str,
    status: str | None = "CLOSED",
    members: tuple[str, ...] = ("dr.a", "dr.b"),
    **kw,
) -> dict:
    """Each member signs the same vote; the last vote's result (naming the decision)."""
    args = {"rationale": "ADJ read reviewed; the tract is healed."} | kw
    results = [vote(platform, conflict_id, m, status=status, **args) for m in members]
    return results[-1]


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
    decision = decide(platform, c["conflict_id"])["decision"]
    row = tract_row(platform, "S05", "T2")
    assert (row["outcome"], row["rule_outcome"], row["decided_by"], row["decision_id"]) == (
        "CLOSED",
        "PENDING",
        "COMMITTEE",
        decision["decision_id"],
    )
    assert decision["members"] == ["dr.a", "dr.b"]
    assert conflict(platform, "READER_DISAGREEMENT", "S05", "T2")["status"] == "DECIDED"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"rationale": "  "}, "rationale is required"),
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
    )["decision"]
    second = decide(
        platform,
        c["conflict_id"],
        status="NOT_CLOSED",
        rationale="On review the collection persists.",
    )["decision"]
    assert second["decision_id"] != first["decision_id"]
    assert tract_row(platform, "S13", "T3")["outcome"] == "NOT_CLOSED"
    trail = platform.audit(DEMO_STUDY).filter(pl.col("kind") == "committee_decision")
    mine = trail.filter(pl.col("what").str.contains(c["conflict_id"]))
    assert mine.select("action", "new_value", "why").rows() == [
        ("DECISION", "CLOSED", "Fluid judged post-surgical."),
        ("DECISION_SUPERSEDES", "NOT_CLOSED", "On review the collection persists."),
    ]
    assert mine["old_value"].to_list() == ["rule: NOT_CLOSED", f"superseded {first['decision_id']}"]
    assert mine["who"].to_list() == ["signed by dr.a, dr.b"] * 2
    votes = platform.audit(DEMO_STUDY).filter(
        (pl.col("kind") == "committee_vote") & pl.col("what").str.contains(c["conflict_id"])
    )
    assert votes["who"].to_list() == ["Dr Alice Able (dr.a)", "Dr Bruno Baker (dr.b)"] * 2
    assert votes["action"].to_list() == ["VOTE", "VOTE", "VOTE_REPLACES", "VOTE_REPLACES"]
    assert votes["new_value"].to_list()[-1] == "decided NOT_CLOSED (signed, cli)"


def test_a_decision_on_a_stale_review_is_refused(platform: Platform) -> None:
    c = conflict(platform, "CLINICAL_MRI_DISCORDANCE", "S13", "T3")
    reviewed = {"seen_fingerprint": c["fingerprint"], "seen_decision": ""}
    first = decide(platform, c["conflict_id"], status="CLOSED", **reviewed)["decision"]
    with pytest.raises(StaleReviewError, match="came into force since you reviewed"):
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


# Issue 9, items 1 and 9: one person, one signed vote ------------------------------------------
def test_one_member_cannot_decide_alone(platform: Platform) -> None:
    c = conflict(platform, "READER_DISAGREEMENT", "S05", "T2")
    first = vote(platform, c["conflict_id"], "dr.a", status="CLOSED")
    assert first["decision"] is None
    assert first["needed"] == "1 of 2 signatures for CLOSED: waiting for 1 more concordant vote"
    assert conflict(platform, "READER_DISAGREEMENT", "S05", "T2")["status"] == "OPEN"
    assert tract_row(platform, "S05", "T2")["decided_by"] == "RULE"
    # signing again, or under another spelling of the same name, is still one person
    again = vote(platform, c["conflict_id"], "DR.A", status="CLOSED", rationale="Still healed.")
    assert again["decision"] is None and again["needed"].startswith("1 of 2")
    fullwidth = vote(platform, c["conflict_id"], "\uff44\uff52.\uff41", status="CLOSED")
    assert fullwidth["voter"] == "dr.a" and fullwidth["decision"] is None
    assert conflict(platform, "READER_DISAGREEMENT", "S05", "T2")["status"] == "OPEN"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ghost.one", "unknown user or wrong password"),
        ("=1+1", "must be 2-64 lower-case letters"),
        ("<b>dr.b</b>", "must be 2-64 lower-case letters"),
        ("dr.b\u200b", "invisible or control character U\\+200B"),
        ("dr.\u0430", "non-ASCII character"),  # Cyrillic a: reads as dr.a
        ("dm.jones", "role data_manager, which may not sign a committee vote"),
    ],
)
def test_nobody_unregistered_or_look_alike_can_vote(
    platform: Platform, name: str, message: str
) -> None:
    c = conflict(platform, "READER_DISAGREEMENT", "S05", "T2")
    before = platform.source.positions()
    with pytest.raises(SignatureRefusedError, match=message):
        vote(platform, c["conflict_id"], name, status="CLOSED")
    assert platform.source.positions() == before


def test_nobody_signs_for_another(platform: Platform) -> None:
    """The vote is whoever the password proves; there is no list of members to fill in."""
    c = conflict(platform, "READER_DISAGREEMENT", "S05", "T2")
    users = directory(platform.home)
    with pytest.raises(SignatureRefusedError, match="wrong password"):
        platform.vote(
            c["conflict_id"],
            status="CLOSED",
            rationale="for dr.b",
            credentials=Credentials("dr.b", "dr.a's password, not dr.b's"),
            directory=users,
        )
    with pytest.raises(SignatureRefusedError, match="must be signed"):
        platform.vote(c["conflict_id"], status="CLOSED", rationale="unsigned")
    with pytest.raises(TypeError):
        platform.vote(  # type: ignore[call-arg]
            c["conflict_id"], status="CLOSED", rationale="x", members=["dr.a", "dr.b"]
        )
    assert platform.votes(DEMO_STUDY).is_empty()


def test_a_removed_member_or_one_without_a_printed_name_cannot_sign(platform: Platform) -> None:
    c = conflict(platform, "READER_DISAGREEMENT", "S05", "T2")
    users = directory(platform.home)
    users.remove("dr.c")
    with pytest.raises(SignatureRefusedError, match="account removed"):
        vote(platform, c["conflict_id"], "dr.c", status="CLOSED")
    directory(platform.home, {"dr.nameless": ("committee", "")}, platform)  # recorded, unnamed
    with pytest.raises(SignatureRefusedError, match="no printed name"):
        vote(platform, c["conflict_id"], "dr.nameless", status="CLOSED")


def test_wrong_passwords_at_signing_count_like_failed_sign_ins(platform: Platform) -> None:
    """Signing is no back door for guessing a member's password: the sign-in throttle counts
    every failure, and past the limit even the right password is refused."""
    c = conflict(platform, "READER_DISAGREEMENT", "S05", "T2")
    users = directory(platform.home)
    guess = Credentials("dr.b", "guess-guess-guess", "cli", "test", "cli:intruder")
    for _ in range(5):
        with pytest.raises(SignatureRefusedError, match="wrong password"):
            platform.vote(
                c["conflict_id"], status="CLOSED", rationale="x", credentials=guess, directory=users
            )
    right = Credentials("dr.b", PASSWORD, "cli", "test", "cli:intruder")
    with pytest.raises(SignatureRefusedError, match=r"5 failed sign-ins .* locked out"):
        platform.vote(
            c["conflict_id"], status="CLOSED", rationale="x", credentials=right, directory=users
        )
    assert platform.votes(DEMO_STUDY).is_empty()


def test_contradictory_votes_leave_the_conflict_open_side_by_side(platform: Platform) -> None:
    """Issue 9, item 1: two members recorded CLOSED then NOT_CLOSED, each naming both."""
    c = conflict(platform, "READER_DISAGREEMENT", "S05", "T2")
    vote(platform, c["conflict_id"], "dr.a", status="CLOSED", rationale="Healed on review.")
    second = vote(platform, c["conflict_id"], "dr.b", status="NOT_CLOSED", rationale="Fluid.")
    assert second["decision"] is None
    assert second["needed"].startswith(
        "discordant votes (CLOSED: 1 of 2 (dr.a); NOT_CLOSED: 1 of 2 (dr.b)): no decision"
    )
    assert conflict(platform, "READER_DISAGREEMENT", "S05", "T2")["status"] == "OPEN"
    _, current = platform.ballot(c["conflict_id"])
    assert current.discordant
    assert {k: [v["voter"] for v in g] for k, g in current.counting.items()} == {
        "CLOSED": ["dr.a"],
        "NOT_CLOSED": ["dr.b"],
    }
    # a third member breaks the tie: two concordant signatures decide, the dissent stays shown
    third = vote(platform, c["conflict_id"], "dr.c", status="NOT_CLOSED", rationale="Agree: fluid.")
    assert third["decision"]["members"] == ["dr.b", "dr.c"]
    assert tract_row(platform, "S05", "T2")["outcome"] == "NOT_CLOSED"


def test_a_decision_stands_until_a_new_concordant_quorum(platform: Platform) -> None:
    c = conflict(platform, "CLINICAL_MRI_DISCORDANCE", "S13", "T3")
    decided = decide(platform, c["conflict_id"], status="CLOSED")["decision"]
    # one member changing their mind alone changes nothing
    alone = vote(platform, c["conflict_id"], "dr.a", status="NOT_CLOSED", rationale="Rethink.")
    assert alone["decision"] is None
    assert alone["needed"] == (
        f"decision {decided['decision_id']} (CLOSED) is in force; to replace it 2 members must "
        "sign the same new outcome: NOT_CLOSED: 1 of 2 (dr.a)"
    )
    assert tract_row(platform, "S13", "T3")["decision_id"] == decided["decision_id"]
    # a concurring vote after the decision is recorded, and decides nothing new
    concur = vote(platform, c["conflict_id"], "dr.c", status="CLOSED", rationale="Agree.")
    assert concur["decision"] is None
    # the same outcome signed again makes no new decision: it is a concurrence
    again = vote(platform, c["conflict_id"], "dr.b", status="CLOSED", rationale="Agree.")
    assert again["decision"] is None
    assert again["needed"].endswith("sign the same new outcome: NOT_CLOSED: 1 of 2 (dr.a)")
    back = vote(platform, c["conflict_id"], "dr.a", status="CLOSED", rationale="Agree after all.")
    assert back["decision"] is None
    assert back["needed"].endswith("(CLOSED) is in force; the votes since concur with it")
    assert tract_row(platform, "S13", "T3")["decision_id"] == decided["decision_id"]
