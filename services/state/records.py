"""What the state and the lock read: typed records of a kind, from whichever log holds them.

The embedded log (:class:`services.log.EventLog`) and the Kafka adjudicator's applied state both
implement :class:`Records`; nothing below the platform knows which one it reads.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any, Protocol

import polars as pl

from services.adjudicator.engine import Adjudication, adjudicate
from services.adjudicator.ruleset import RuleSet
from services.adjudicator.state import EVIDENCE_KINDS, Evidence
from services.adjudicator.votes import decisions_from_votes

Cut = dict[str, int]
"""Per kind, the offset before which a lock (or a dated snapshot) reads."""


class Records(Protocol):
    def records(
        self,
        kind: str,
        study: str | None = None,
        upto: int | None = None,
        subjects: Collection[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.LazyFrame:
        """Every accepted event of ``kind`` as typed columns (contract fields plus ``offset``,
        ``event_id``, ``subject_id``), in log order."""
        ...

    def positions(self) -> dict[str, int]: ...

    def studies(self) -> list[str]: ...


def records_at(
    source: Records,
    kind: str,
    study: str,
    cut: Cut | None = None,
    subjects: Collection[str] | None = None,
) -> pl.LazyFrame:
    """``kind``'s records of ``study``, before the cut when there is one (a kind the cut does
    not name had no events then)."""
    upto = None if cut is None else cut.get(kind, 0)
    return source.records(kind, study, upto, subjects)


def adjudicate_study(
    source: Records,
    study: str,
    rules: RuleSet,
    cut: Cut | None = None,
    subjects: Collection[str] | None = None,
    lock_cut: Cut | None = None,
) -> Adjudication:
    """The rules over ``study``'s records (at the cut; of ``subjects`` only when given: every
    rule is subject-local, so the result for those subjects is the same as in the whole study).
    ``lock_cut``: the cut of the lock in force, to flag evidence that arrived after it."""
    records = {kind: records_at(source, kind, study, cut, subjects) for kind in EVIDENCE_KINDS}
    return adjudicate(
        study,
        Evidence.from_records(records),
        rules,
        decisions_at(source, study, rules.quorum, cut, subjects),
        records_at(source, "conflict_change", study, cut, subjects),
        lock_positions=lock_cut,
    )


def decisions_at(
    source: Records,
    study: str,
    quorum: int,
    cut: Cut | None = None,
    subjects: Collection[str] | None = None,
) -> pl.LazyFrame:
    """The committee's decisions the engine applies: those the signed votes brought into force
    (:func:`~services.adjudicator.votes.decisions_from_votes`), and the unsigned
    ``committee_decision`` records written before e-signatures (still readable, never written
    now)."""
    votes = records_at(source, "committee_vote", study, cut, subjects)
    if subjects is not None:  # a source may hand every subject's votes: keep the asked ones
        votes = votes.filter(pl.col("subject_id").is_in(list(subjects)))
    derived = decisions_from_votes(votes, quorum).lazy()
    legacy = records_at(source, "committee_decision", study, cut, subjects)
    return pl.concat([legacy, derived], how="diagonal_relaxed")


class RecordsAt:
    """A records source as it was at ``cut`` (what a lock or a dated snapshot reads)."""

    def __init__(self, source: Records, cut: Cut) -> None:
        self.source, self.cut = source, cut

    def records(
        self,
        kind: str,
        study: str | None = None,
        upto: int | None = None,
        subjects: Collection[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.LazyFrame:
        limit = self.cut.get(kind, 0)
        return self.source.records(
            kind, study, min(limit, upto) if upto is not None else limit, subjects, columns
        )

    def positions(self) -> dict[str, int]:
        return dict(self.cut)

    def studies(self) -> list[str]:
        return self.source.studies()


IN_FORCE_ACTIONS = frozenset({"LOCK", "UNLOCK"})
"""The lock events that decide the lock in force; a CLAIM (a lock id reserved while the lock
is taken) or a RAISE (soft to hard) does not change it."""


def lock_in_force(source: Records, study: str) -> dict[str, Any] | None:
    """The study's lock in force: its latest LOCK event, unless an UNLOCK followed it."""
    events = (
        source.records("lock", study)
        .filter(pl.col("action").is_in(list(IN_FORCE_ACTIONS)))
        .sort("offset")
        .collect()
    )
    if events.is_empty() or events["action"][-1] != "LOCK":
        return None
    return events.row(-1, named=True)


def lock_cut(lock: dict[str, Any] | None) -> Cut | None:
    """The cut of a lock event (its ``positions``), or None."""
    if lock is None:
        return None
    return {k: int(v) for k, v in json.loads(lock["positions"]).items()}
