"""Committee votes: one signed vote per member, and the decisions they bring into force.

A decision is never recorded by one person for others. Each member signs their own vote
(``committee_vote`` events, see :mod:`services.signatures`), and the decision in force is
*derived* from the votes by :func:`decisions_from_votes`, a pure function, into the same frame
the engine has always read (the columns of ``committee_decision`` records):

- votes are read per conflict in log order, in **rounds**. Within a round each member's latest
  vote counts. A decision forms at the vote that makes ``quorum`` distinct members' latest
  votes agree on the same evidence (fingerprint), status and mapped tract; its members are those
  signers, ``recorded_by`` the last of them, ``decided_at`` the moment the quorum was reached,
  and its id is derived from the ids of the votes it rests on (stable however often it is
  derived). Rationales are kept per signer.
- a decision ends its round: what counts after it are votes signed after it, so superseding a
  decision takes a new concordant quorum of members who voted once it was in force (a member
  who changes their vote alone changes nothing; nor does a vote cast before the decision).
  A new quorum for the same outcome on the same evidence is a concurrence, not a new decision.
- discordant votes form no decision: the conflict stays OPEN and every page shows the votes
  side by side (:func:`ballot`).

Whether the signers were registered committee members is checked when each vote is signed;
the derivation trusts the signed record (a member removed later keeps their past votes).
Votes are few (each is signed by hand), so the rounds are walked in Python, and only for the
conflicts that have at least ``quorum`` voters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from services.adjudicator.committee import check_choice
from services.events import Event, digest, make_event
from services.signatures import Signature, manifestation

VOTE_COLUMNS = (
    "offset",
    "event_id",
    "vote_id",
    "conflict_id",
    "conflict_type",
    "subject_id",
    "tract_id",
    "status",
    "maps_to",
    "rationale",
    "fingerprint",
    "rule_outcome",
    "voter",
    "printed_name",
    "role",
    "meaning",
    "signed_at",
    "signed_via",
)
DECISION_SCHEMA = pl.Schema(
    {
        "offset": pl.Int64(),
        "event_id": pl.String(),
        "decision_id": pl.String(),
        "conflict_id": pl.String(),
        "conflict_type": pl.String(),
        "subject_id": pl.String(),
        "tract_id": pl.String(),
        "status": pl.String(),
        "maps_to": pl.String(),
        "rationale": pl.String(),
        "members": pl.List(pl.String()),
        "recorded_by": pl.String(),
        "decided_at": pl.Datetime("us", "UTC"),
        "fingerprint": pl.String(),
        "rule_outcome": pl.String(),
        "supersedes": pl.String(),
        "vote_ids": pl.List(pl.String()),
        "signatures": pl.List(pl.String()),
    }
)
"""The decisions frame: ``committee_decision``'s columns, plus the votes behind each."""


def meaning(conflict_type: str, tract_id: str, status: str, maps_to: str | None) -> str:
    """What a vote's signature means, in words (11.50(a)(3))."""
    if status == "MAPPED":
        return f"mapped {tract_id} to {maps_to}"
    if status == "NEW_TRACT":
        return f"decided {tract_id} is a NEW_TRACT"
    return f"decided {status}"


def make_vote(
    *,
    study: str,
    conflict: dict[str, Any],
    status: str,
    rationale: str,
    registry_tracts: Sequence[str],
    signature: Signature | None,
    maps_to: str | None = None,
    rule_outcome: str | None = None,
    replaces: str | None = None,
) -> Event:
    """Check a vote against the protocol and turn it into a signed ``committee_vote`` event
    (``signature`` None: the checks only, for a review step; the event is then unsigned and
    never published)."""
    status, maps_to, rationale = check_choice(conflict, status, maps_to, rationale, registry_tracts)
    cid = conflict["conflict_id"]
    sig = signature.to_dict() if signature else {}
    payload = {
        "conflict_id": cid,
        "conflict_type": conflict["type"],
        "subject_id": conflict["subject_id"],
        "tract_id": conflict["tract_id"],
        "status": status,
        "maps_to": maps_to,
        "rationale": rationale,
        "fingerprint": conflict["fingerprint"],
        "rule_outcome": rule_outcome,
        "voter": sig.get("signer", ""),
        "printed_name": sig.get("printed_name", ""),
        "role": sig.get("role", ""),
        "meaning": meaning(conflict["type"], conflict["tract_id"], status, maps_to),
        "signed_at": sig.get("signed_at", ""),
        "signed_via": sig.get("signed_via", ""),
        "authentication": sig.get("authentication", ""),
        "replaces": replaces,
    }
    vote_id = "V-" + digest(
        cid,
        payload["voter"],
        status,
        maps_to or "",
        rationale,
        payload["fingerprint"],
        payload["signed_at"],
        length=12,
    )
    payload = {"vote_id": vote_id} | payload
    return make_event("committee_vote", study, conflict["subject_id"], payload, vote_id)


# deriving decisions -----------------------------------------------------------------------------
def _key(vote: dict[str, Any]) -> tuple[str, str, str]:
    return (vote["fingerprint"], vote["status"], vote["maps_to"] or "")


@dataclass
class _Conflict:
    """One conflict's votes walked in rounds: the decisions formed and the open round."""

    decisions: list[dict[str, Any]] = field(default_factory=list)
    round: dict[str, dict[str, Any]] = field(default_factory=dict)  # voter -> latest vote


def _walk(votes: list[dict[str, Any]], quorum: int) -> _Conflict:
    """``votes`` of one conflict in log order -> the decisions they formed and the open round."""
    state = _Conflict()
    for vote in votes:
        state.round[vote["voter"]] = vote
        key = _key(vote)
        group = [v for v in state.round.values() if _key(v) == key]
        in_force = state.decisions[-1] if state.decisions else None
        if len(group) < quorum or (in_force is not None and in_force["_key"] == key):
            continue
        state.decisions.append(_decision(group, vote, in_force))
        state.round = {}
    return state


def _decision(
    group: list[dict[str, Any]], last: dict[str, Any], in_force: dict[str, Any] | None
) -> dict[str, Any]:
    signers = sorted(group, key=lambda v: v["voter"])
    texts = {v["rationale"] for v in signers}
    rationale = (
        signers[0]["rationale"]
        if len(texts) == 1
        else " | ".join(f"{v['voter']}: {v['rationale']}" for v in signers)
    )
    vote_ids = sorted(v["vote_id"] for v in signers)
    return {
        "offset": last["offset"],
        "event_id": last["event_id"],
        "decision_id": "D-" + digest(*vote_ids, length=12),
        "conflict_id": last["conflict_id"],
        "conflict_type": last["conflict_type"],
        "subject_id": last["subject_id"],
        "tract_id": last["tract_id"],
        "status": last["status"],
        "maps_to": last["maps_to"],
        "rationale": rationale,
        "members": [v["voter"] for v in signers],
        "recorded_by": last["voter"],
        "decided_at": last["signed_at"],
        "fingerprint": last["fingerprint"],
        "rule_outcome": last["rule_outcome"],
        "supersedes": in_force["decision_id"] if in_force else None,
        "vote_ids": vote_ids,
        "signatures": [
            manifestation(v["printed_name"], v["voter"], v["signed_at"], v["meaning"])
            for v in signers
        ],
        "_key": _key(last),
    }


def _by_conflict(votes: pl.DataFrame) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in votes.sort("conflict_id", "offset").iter_rows(named=True):
        grouped.setdefault(row["conflict_id"], []).append(row)
    return grouped


def decisions_from_votes(votes: pl.DataFrame | pl.LazyFrame, quorum: int) -> pl.DataFrame:
    """The decisions the votes brought into force, oldest first per conflict (see the module
    docstring), as the frame the engine reads (:data:`DECISION_SCHEMA`)."""
    votes = votes.lazy().select(VOTE_COLUMNS)
    # Only conflicts with enough voters can hold a decision: the others are never walked.
    enough = votes.filter(pl.col("voter").n_unique().over("conflict_id") >= quorum).collect()
    rows = [
        {k: v for k, v in d.items() if not k.startswith("_")}
        for conflict_votes in _by_conflict(enough).values()
        for d in _walk(conflict_votes, quorum).decisions
    ]
    return pl.DataFrame(rows, schema=DECISION_SCHEMA, orient="row")


# what a conflict's page and `tract vote` say ----------------------------------------------------
@dataclass(frozen=True)
class Ballot:
    """Where the committee stands on one conflict: every vote (newest first), the votes that
    count now (the open round, on the current evidence) grouped by outcome, and what is
    still needed."""

    votes: list[dict[str, Any]]
    counting: dict[str, list[dict[str, Any]]]
    """Outcome ("CLOSED", "MAPPED -> T1") -> the latest votes for it on the current evidence."""
    discordant: bool
    decided: bool
    needed: str

    def latest_of(self, voter: str) -> dict[str, Any] | None:
        return next((v for v in self.votes if v["voter"] == voter), None)


def outcome_label(status: str, maps_to: str | None) -> str:
    return f"{status} -> {maps_to}" if maps_to else status


def ballot(votes: pl.DataFrame, conflict: dict[str, Any], quorum: int) -> Ballot:
    """The ballot of ``conflict`` (a row of the adjudication's conflicts) from its votes."""
    mine = votes.filter(pl.col("conflict_id") == conflict["conflict_id"]).sort("offset")
    rows = mine.to_dicts()
    walked = _walk(rows, quorum)
    decided = conflict["status"] == "DECIDED"
    current = [v for v in walked.round.values() if v["fingerprint"] == conflict["fingerprint"]]
    counting: dict[str, list[dict[str, Any]]] = {}
    for vote in sorted(current, key=lambda v: v["offset"]):
        counting.setdefault(outcome_label(vote["status"], vote["maps_to"]), []).append(vote)
    discordant = len(counting) > 1
    return Ballot(
        votes=rows[::-1],
        counting=counting,
        discordant=discordant,
        decided=decided,
        needed=_needed(counting, decided, conflict, quorum),
    )


def _needed(
    counting: dict[str, list[dict[str, Any]]], decided: bool, conflict: dict[str, Any], quorum: int
) -> str:
    if conflict["status"] == "RESOLVED":
        return "the conflict no longer holds: no vote is needed"
    tally = {
        k: f"{k}: {len(g)} of {quorum} ({', '.join(v['voter'] for v in g)})"
        for k, g in counting.items()
    }
    if decided:
        label = outcome_label(conflict["decision_status"], conflict.get("maps_to"))
        head = f"decision {conflict['decision_id']} ({label}) is in force"
        others = [text for k, text in tally.items() if k != label]
        if others:
            return (
                f"{head}; to replace it {quorum} members must sign the same new outcome: "
                + "; ".join(others)
            )
        if counting:
            return f"{head}; the votes since concur with it"
        return f"{head}; replacing it takes {quorum} new concordant signatures"
    if not counting:
        return f"no vote on this evidence yet: {quorum} concordant signatures are needed"
    if len(counting) > 1:
        return (
            f"discordant votes ({'; '.join(tally.values())}): no decision; the conflict stays "
            f"open until {quorum} members sign the same outcome"
        )
    label, group = next(iter(counting.items()))
    missing = quorum - len(group)
    return (
        f"{len(group)} of {quorum} signatures for {label}: waiting for {missing} more "
        f"concordant vote{'s' if missing > 1 else ''}"
    )
