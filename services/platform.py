"""The platform assembled: an event log, an object store and a rule set, with the operations
the CLI, the web page and the DAGs all call. Adapters choose the log and the store; the
operations are the same on every one.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import polars as pl

import schemas
from services.adjudicator.committee import make_decision
from services.adjudicator.engine import Adjudication, adjudicate
from services.adjudicator.errors import StaleReviewError, UnknownConflictError
from services.adjudicator.ruleset import RuleSet, load_ruleset
from services.adjudicator.state import EVIDENCE_KINDS, Evidence, decode, empty_records
from services.bus import EventBus, open_bus
from services.config import Settings
from services.events import Event, make_event, utc_now
from services.ingest.errors import FileRefusedError
from services.ingest.report import IngestReport
from services.ingest.service import ingest_file, known_from_frame
from services.store import ObjectStore, open_store


class EventSource(Protocol):
    """Where the adjudicator reads applied events from, as frames."""

    def frame(
        self, topic: str, study: str | None = None, upto: int | None = None
    ) -> pl.DataFrame: ...

    def positions(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class IngestOutcome:
    reports: tuple[IngestReport, ...]
    refused: tuple[FileRefusedError, ...]


class Platform:
    def __init__(
        self, bus: EventBus, source: EventSource, store: ObjectStore, rules: RuleSet | None = None
    ) -> None:
        self.bus, self.source, self.store = bus, source, store
        self.rules = rules or load_ruleset()

    @classmethod
    def embedded(cls, home: Path | str, rules: RuleSet | None = None) -> Platform:
        """The default: an event log and an object-store folder under ``home``."""
        return cls.from_settings(Settings(home=Path(home)), rules)

    @classmethod
    def from_settings(cls, settings: Settings, rules: RuleSet | None = None) -> Platform:
        """The adapters the settings name (embedded log or Kafka; local folder or S3)."""
        bus, source = open_bus(settings)
        return cls(bus, source, open_store(settings), rules)

    # ingest ---------------------------------------------------------------------------------
    def known_records(self, kind: str, study: str) -> pl.DataFrame:
        frame = self.source.frame(kind, study)
        recent = getattr(self.bus, "recent_frame", None)  # Kafka: sent here, maybe not applied
        if recent is not None:
            frame = pl.concat([frame, recent(kind, study)])
        return known_from_frame(frame, schemas.contract(kind))

    def ingest(self, study: str, paths: list[Path], kind: str | None = None) -> IngestOutcome:
        """Ingest each file; a refused file applies nothing and the others go on."""
        reports, refused = [], []
        # Identity checks read the log, then publish: one ingest at a time per log, where the
        # log can say so (the embedded one can; Kafka ingest has one writer per topic).
        exclusive = getattr(self.bus, "exclusive", contextlib.nullcontext)
        for path in paths:
            try:
                with exclusive():
                    reports.append(
                        ingest_file(Path(path), study, self.bus, self.known_records, kind)
                    )
            except FileRefusedError as exc:
                refused.append(exc)
        self.sync_conflicts(study)
        return IngestOutcome(tuple(reports), tuple(refused))

    # adjudication ---------------------------------------------------------------------------
    def records(self, kind: str, study: str, upto: dict[str, int] | None = None) -> pl.LazyFrame:
        """Every accepted version of a kind's records for a study (typed, with event_id and
        offset), optionally only those before the cut ``upto``."""
        frame = self.source.frame(kind, study, None if upto is None else upto.get(kind, 0))
        if frame.is_empty():
            return empty_records(kind)
        return decode(frame, schemas.contract(kind))

    def studies(self) -> list[str]:
        frames = [
            self.source.frame(kind).select("study") for kind in ("subject", "committee_decision")
        ]
        return sorted(pl.concat(frames)["study"].unique().to_list())

    def lock_positions(self, study: str) -> dict[str, int] | None:
        """The log positions of the study's lock in force, if any (the latest lock not undone)."""
        locks = self.records("lock", study).sort("offset").collect()
        if locks.is_empty() or locks["action"][-1] != "LOCK":
            return None
        return json.loads(locks["positions"][-1])

    def adjudicate(self, study: str, upto: dict[str, int] | None = None) -> Adjudication:
        records = {kind: self.records(kind, study, upto) for kind in EVIDENCE_KINDS}
        evidence = Evidence.from_records(records)
        return adjudicate(
            study,
            evidence,
            self.rules,
            self.records("committee_decision", study, upto),
            self.records("conflict_change", study, upto),
            lock_positions=None if upto is not None else self.lock_positions(study),
        )

    def sync_conflicts(self, study: str, result: Adjudication | None = None) -> int:
        """Record in the log which conflicts were raised or cleared since the last sync
        (``result``: the study's adjudication, when the caller has just made it)."""
        if hasattr(self.bus, "await_applied"):  # Kafka: the adjudicator service records them;
            self.bus.await_applied()  # wait until it has applied what this process sent
            return 0
        result = result or self.adjudicate(study)
        register = self.records("conflict_change", study).sort("offset").collect()
        last = register.group_by("conflict_id").agg(
            pl.col("condition", "fingerprint", "conflict_type", "subject_id", "tract_id").last(),
            changes=pl.len(),
        )
        now = result.conflicts.filter(pl.col("status") != "RESOLVED").select(
            "conflict_id", "type", "subject_id", "tract_id", "fingerprint", "detail"
        )
        joined = now.join(last, on="conflict_id", how="full", coalesce=True, suffix="_was")
        events: list[Event] = []
        at = utc_now()
        for row in joined.iter_rows(named=True):
            holds = row["type"] is not None
            was = row["condition"]
            if holds and (was != "RAISED" or row["fingerprint"] != row["fingerprint_was"]):
                condition = "RAISED"
            elif not holds and was == "RAISED":
                condition = "CLEARED"
                row |= {
                    "type": row["conflict_type"],
                    "subject_id": row["subject_id_was"],
                    "tract_id": row["tract_id_was"],
                }
            else:
                continue
            payload = {
                "conflict_id": row["conflict_id"],
                "conflict_type": row["type"],
                "subject_id": row["subject_id"],
                "tract_id": row["tract_id"],
                "condition": condition,
                "fingerprint": row["fingerprint"] if holds else None,
                "detail": row["detail"] if holds else None,
                "at": at,
            }
            seq = row["changes"] or 0
            events.append(
                make_event(
                    "conflict_change",
                    study,
                    row["subject_id"],
                    payload,
                    row["conflict_id"],
                    seq,
                    condition,
                )
            )
        return self.bus.publish(events)

    # committee ------------------------------------------------------------------------------
    def find_conflict(
        self, conflict_id: str, study: str | None = None
    ) -> tuple[str, dict[str, Any], Adjudication]:
        for candidate in [study] if study else self.studies():
            result = self.adjudicate(candidate)
            match = result.conflicts.filter(pl.col("conflict_id") == conflict_id)
            if match.height:
                return candidate, match.row(0, named=True), result
        where = f"study {study}" if study else "any study"
        raise UnknownConflictError(
            f"no conflict {conflict_id} in {where}; list them with `tract conflicts --all`"
        )

    def decide(
        self,
        conflict_id: str,
        *,
        status: str | None,
        rationale: str,
        members: list[str],
        recorded_by: str,
        maps_to: str | None = None,
        study: str | None = None,
        dry_run: bool = False,
        seen_fingerprint: str | None = None,
        seen_decision: str | None = None,
    ) -> dict[str, Any]:
        """Record a committee decision (validated against the protocol) and return it.

        ``dry_run`` validates and returns the decision without recording it (a confirm step).
        ``seen_fingerprint`` / ``seen_decision``: the conflict's inputs and decision in force as
        the deciding member reviewed them ("" for none); if either changed since, the decision
        is refused with :class:`StaleReviewError`.
        """
        study, conflict, result = self.find_conflict(conflict_id, study)
        if seen_fingerprint is not None and (conflict["fingerprint"] or "") != seen_fingerprint:
            raise StaleReviewError(
                f"conflict {conflict_id}: the evidence changed since you reviewed it; "
                "review the conflict again before deciding"
            )
        if seen_decision is not None and (conflict["decision_id"] or "") != seen_decision:
            raise StaleReviewError(
                f"conflict {conflict_id}: another decision ({conflict['decision_id']}) was "
                "recorded since you reviewed it; review the conflict again"
            )
        registry = result.tracts.filter(pl.col("subject_id") == conflict["subject_id"])
        rule = registry.filter(pl.col("tract_id") == conflict["tract_id"])
        event = make_decision(
            study=study,
            conflict=conflict,
            status=status or "",
            rationale=rationale,
            members=members,
            recorded_by=recorded_by,
            rules=self.rules,
            registry_tracts=registry["tract_id"].to_list(),
            maps_to=maps_to,
            rule_outcome=rule["rule_outcome"][0] if rule.height else None,
        )
        if dry_run:
            return event.payload
        self.bus.publish([event])
        self.sync_conflicts(study)
        return event.payload

    # lock and report ------------------------------------------------------------------------
    def lock(
        self, study: str, lock_id: str, reason: str, requested_by: str, level: str = "soft"
    ) -> dict[str, Any]:
        from services.adjudicator.lock import take_lock

        return take_lock(self, study, lock_id, reason, requested_by, level)

    def report(
        self, study: str, lock_id: str | None = None, result: Adjudication | None = None
    ) -> dict[str, Any]:
        """The report of a lock, or of the current state (from ``result`` when the caller has
        just adjudicated ``study``)."""
        from services.adjudicator.snapshot import open_lock, outcome_snapshot

        if lock_id:
            snapshot = open_lock(self.store, study, lock_id)
        else:
            snapshot = outcome_snapshot(self, study, result or self.adjudicate(study))
        return snapshot.report(self.rules.confidence_level)

    def audit(self, study: str) -> pl.DataFrame:
        from services.adjudicator.audit import audit_trail

        return audit_trail(self, study)


def lock_event(study: str, payload: dict[str, Any]) -> Event:
    return make_event("lock", study, "", payload, payload["lock_id"], payload["action"])
