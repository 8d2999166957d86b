"""Decisions derived from signed votes, on tiny hand-built frames (the pure rule)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from services.adjudicator.votes import ballot, decisions_from_votes

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def votes(*rows: tuple[str, str, str, str]) -> pl.DataFrame:
    """(voter, status, fingerprint, conflict) per vote, in log order, a minute apart."""
    return pl.DataFrame(
        [
            {
                "offset": i,
                "event_id": f"e{i}",
                "vote_id": f"V-{i}",
                "conflict_id": conflict,
                "conflict_type": "READER_DISAGREEMENT",
                "subject_id": "S05",
                "tract_id": "T2",
                "status": status,
                "maps_to": None,
                "rationale": f"{voter} says {status}",
                "fingerprint": fingerprint,
                "rule_outcome": "PENDING",
                "voter": voter,
                "printed_name": voter.upper(),
                "role": "committee",
                "meaning": f"decided {status}",
                "signed_at": T0 + timedelta(minutes=i),
                "signed_via": "cli",
            }
            for i, (voter, status, fingerprint, conflict) in enumerate(rows)
        ],
        schema_overrides={"maps_to": pl.String, "signed_at": pl.Datetime("us", "UTC")},
    )


def derived(*rows: tuple[str, str, str, str], quorum: int = 2) -> list[tuple]:
    frame = decisions_from_votes(votes(*rows), quorum)
    return frame.select("conflict_id", "status", "members", "recorded_by").rows()


def test_quorum_of_concordant_votes_on_the_same_evidence_decides() -> None:
    assert derived(("a", "CLOSED", "F1", "C1")) == []
    assert derived(("a", "CLOSED", "F1", "C1"), ("b", "CLOSED", "F1", "C1")) == [
        ("C1", "CLOSED", ["a", "b"], "b")
    ]
    # on other evidence, or on another conflict, votes do not add up
    assert derived(("a", "CLOSED", "F1", "C1"), ("b", "CLOSED", "F2", "C1")) == []
    assert derived(("a", "CLOSED", "F1", "C1"), ("b", "CLOSED", "F1", "C2")) == []


def test_one_person_voting_twice_is_one_vote() -> None:
    assert derived(("a", "CLOSED", "F1", "C1"), ("a", "CLOSED", "F1", "C1")) == []


def test_discordant_votes_decide_nothing_until_a_member_changes() -> None:
    split = (("a", "CLOSED", "F1", "C1"), ("b", "NOT_CLOSED", "F1", "C1"))
    assert derived(*split) == []
    assert derived(*split, ("a", "NOT_CLOSED", "F1", "C1")) == [
        ("C1", "NOT_CLOSED", ["a", "b"], "a")
    ]


def test_superseding_takes_a_new_quorum_signed_after_the_decision() -> None:
    decided = (("a", "CLOSED", "F1", "C1"), ("b", "CLOSED", "F1", "C1"))
    # c voted NOT_CLOSED before the decision; d agrees after it: c's old vote does not count
    assert derived(("c", "NOT_CLOSED", "F1", "C1"), *decided, ("d", "NOT_CLOSED", "F1", "C1")) == [
        ("C1", "CLOSED", ["a", "b"], "b")
    ]
    later = (("c", "NOT_CLOSED", "F1", "C1"), ("d", "NOT_CLOSED", "F1", "C1"))
    frame = decisions_from_votes(votes(*decided, *later), 2)
    assert frame["status"].to_list() == ["CLOSED", "NOT_CLOSED"]
    assert frame["supersedes"].to_list() == [None, frame["decision_id"][0]]
    assert frame["decided_at"][1] == T0 + timedelta(minutes=3)
    # concurring votes after a decision are no new decision
    assert len(derived(*decided, ("c", "CLOSED", "F1", "C1"), ("d", "CLOSED", "F1", "C1"))) == 1
    # the same outcome on new evidence is a new decision (the old one no longer applies)
    assert [
        r[1] for r in derived(*decided, ("a", "CLOSED", "F2", "C1"), ("b", "CLOSED", "F2", "C1"))
    ] == [
        "CLOSED",
        "CLOSED",
    ]


def test_a_decision_id_is_stable_and_names_its_votes() -> None:
    rows = (("a", "CLOSED", "F1", "C1"), ("b", "CLOSED", "F1", "C1"), ("c", "CLOSED", "F1", "C2"))
    first = decisions_from_votes(votes(*rows), 2)
    again = decisions_from_votes(votes(*rows).reverse(), 2)  # the log order is what counts
    assert first["decision_id"].to_list() == again["decision_id"].to_list()
    assert first["vote_ids"].to_list() == [["V-0", "V-1"]]
    assert first["signatures"][0].to_list() == [
        "A (a), 2026-11-26 09:00:00 UTC: decided CLOSED",
        "B (b), 2026-11-26 09:01:00 UTC: decided CLOSED",
    ]
    assert first["rationale"][0] == "a: a says CLOSED | b: b says CLOSED"


def test_quorum_comes_from_the_rule_set() -> None:
    rows = (("a", "CLOSED", "F1", "C1"), ("b", "CLOSED", "F1", "C1"))
    assert derived(*rows, quorum=3) == []
    assert derived(*rows, ("c", "CLOSED", "F1", "C1"), quorum=3) == [
        ("C1", "CLOSED", ["a", "b", "c"], "c")
    ]


def test_the_ballot_says_what_is_still_needed() -> None:
    conflict = {"conflict_id": "C1", "fingerprint": "F2", "status": "OPEN"}
    frame = votes(("a", "CLOSED", "F1", "C1"), ("b", "CLOSED", "F2", "C1"))
    current = ballot(frame, conflict, 2)
    assert current.needed == "1 of 2 signatures for CLOSED: waiting for 1 more concordant vote"
    assert [v["voter"] for v in current.votes] == ["b", "a"]  # newest first, all kept
    assert list(current.counting) == ["CLOSED"]  # a's vote was on earlier evidence
