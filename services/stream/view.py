"""The Kafka adjudicator's state as every other process reads it (the CLI, the web page, the
DAGs): its records and its maintained outcomes, never written here and never answered with
zeros while the service is rebuilding.

A read checks the service's state first:
- no applied state, or nothing applied yet: :class:`NothingAppliedError` (the service never
  ran on this home, or its state was deleted and it has not started again);
- a rebuild from the topics under way: :class:`RebuildingError`, "rebuilding: N of M
  records applied";
- the maintained outcomes behind the applied events (the service is between applying a batch
  and adjudicating it): wait for the service (at most ``TRACT_KAFKA_APPLY_WAIT_S``), so a
  command after ``tract decide`` sees the decision; a service that is not running is said, and
  the outcomes it last adjudicated are shown.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import polars as pl

from services.adjudicator.ruleset import RuleSet
from services.events import Event
from services.log.segment import Batch
from services.state import MaintainedState
from services.state.maintained import STUDY_WIDE, TOUCHES_SUBJECTS, BaselineLoader
from services.stream.applied import AppliedLog
from services.stream.errors import NothingAppliedError, RebuildingError, StreamError

log = logging.getLogger(__name__)

ALIVE_S = 15.0
"""A heartbeat older than this: the service is not running."""
ADJUDICATED = TOUCHES_SUBJECTS | STUDY_WIDE


class AppliedView(AppliedLog):
    """The service's applied state, read-only, refusing reads it cannot answer truthfully."""

    def __init__(self, folder: Any, apply_wait_s: float = 30.0) -> None:
        super().__init__(folder)
        self.apply_wait_s = apply_wait_s

    def _index(self, create: bool = False) -> Any:
        """No log until its marker is there: the service may be creating it right now (the
        index is written a moment before the marker), which is not a damaged log."""
        if self._db is None and not self.exists:
            return None
        return super()._index(create)

    # what a reader may ask --------------------------------------------------------------------
    def ready(self) -> None:
        """Refuse while the service's state cannot answer for the whole trial."""
        if not self.exists:
            raise NothingAppliedError(
                f"the adjudicator service has no applied state in {self.root}: it has not run "
                "on this home, or its state was deleted. Start `tract adjudicator run`; it "
                "rebuilds from the Kafka topics, and `tract adjudicator status` shows how far"
            )
        self._not_rebuilding()
        if not self.kafka_positions():
            raise NothingAppliedError(
                f"the adjudicator service has applied nothing in {self.root} yet; check that "
                "`tract adjudicator run` is running (`tract adjudicator status`)"
            )

    def _not_rebuilding(self) -> None:
        """Refuse while a rebuild runs; wait (at most ``apply_wait_s``) while a live service
        is only finishing one (every record it knew of applied, confirming nothing follows)."""
        deadline = time.monotonic() + self.apply_wait_s
        while targets := self.rebuild_targets():
            applied = self.kafka_positions()
            finishing = all(applied.get(p, 0) >= end for p, end in targets.items())
            age = self.heartbeat_age()
            alive = age is not None and age < ALIVE_S
            if not (finishing and alive) or time.monotonic() > deadline:
                raise RebuildingError(rebuilding_text(applied, targets))
            time.sleep(0.1)

    def studies(self) -> list[str]:
        self.ready()
        return super().studies()

    def records(
        self,
        kind: str,
        study: str | None = None,
        upto: int | None = None,
        subjects: Collection[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.LazyFrame:
        self._not_rebuilding()
        return super().records(kind, study, upto, subjects, columns)

    def maintained_state(
        self, rules: RuleSet, baseline: BaselineLoader | None = None
    ) -> MaintainedState:
        """The service's maintained outcomes, as this process reads them."""
        return FollowedState(self, rules, baseline)

    # what a reader never does -----------------------------------------------------------------
    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """No writer lock: this process never writes the service's state (the service
        re-checks every identity it applies)."""
        yield

    def append(self, batches: Sequence[Batch], extra: Any = None) -> int:
        raise StreamError(
            f"{self.root} is the adjudicator service's state: only `tract adjudicator run` "
            "writes it; publish to Kafka instead"
        )

    def publish(self, events: Sequence[Event]) -> int:
        return self.append([])


def rebuilding_text(applied: dict[Any, int], targets: dict[Any, int]) -> str:
    """ "rebuilding: N of M records applied" (M: what the topics held when the rebuild began,
    as the broker reported it)."""
    done, total = sum(applied.get(p, 0) for p in targets), sum(targets.values())
    progress = (
        f"{done} of {total} records applied"
        if done < total
        else f"{done} records applied, confirming that no more follow"
    )
    return (
        f"rebuilding: {progress}; the adjudicator service is rebuilding its state from the "
        "Kafka topics. Outcomes, conflicts and reports are answered once it is done "
        "(`tract adjudicator status`)"
    )


class FollowedState(MaintainedState):
    """The service's maintained outcomes, read by another process: caught up by the service
    alone (this process waits for it, and never writes the state or the log)."""

    def __init__(
        self, view: AppliedView, rules: RuleSet, baseline: BaselineLoader | None = None
    ) -> None:
        super().__init__(view.state_folder, view, rules, baseline)
        self.view = view

    def catch_up(self) -> int:
        self.view.ready()
        deadline = time.monotonic() + self.view.apply_wait_s
        while behind := self.behind():
            age = self.view.heartbeat_age()
            if age is None or age > ALIVE_S or time.monotonic() > deadline:
                state = (
                    "is not running"
                    if age is None or age > ALIVE_S
                    else f"has not adjudicated them within {self.view.apply_wait_s:.0f}s"
                )
                log.warning(
                    "the adjudicator service applied %d event(s) it has not adjudicated yet and "
                    "%s: these outcomes are as it last adjudicated them",
                    behind,
                    state,
                )
                break
            time.sleep(0.1)
        return 0

    def behind(self) -> int:
        """Events applied after the state's last catch-up that may change an outcome."""
        applied = self.store.applied()
        since = 0 if applied is None else applied.seq
        return sum(e.count for e in self.view.entries() if e.seq > since and e.topic in ADJUDICATED)
