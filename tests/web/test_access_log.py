"""Access events: every field bounded, repeated refusals aggregated, refusals about a study
that does not exist filed where every trail shows them. Pure, with a fake clock."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from services.audit import FIELD_LIMITS, access_event, bounded
from services.events import Event
from services.web.core import ANONYMOUS_PER_MINUTE, INDIVIDUAL_PER_MINUTE, AccessRecorder


class Log:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.now = datetime(2026, 11, 26, 9, 0, 5, tzinfo=UTC)

    def publish(self, events: list[Event]) -> None:
        self.events += events

    def recorder(self) -> AccessRecorder:
        return AccessRecorder(self.publish, lambda: ["EXO1"], clock=lambda: self.now)


def refusal(client: str = "203.0.113.9", who: str = "dr.adams", **more: object) -> dict:
    return {
        "who": who,
        "role": None,
        "action": "SIGN_IN",
        "outcome": "REFUSED",
        "detail": "wrong password",
        "path": "/login",
        "client": client,
    } | more


def counted(events: list[Event]) -> int:
    """Refusals the events account for: one each, or the count a summary states."""
    total = 0
    for event in events:
        match = re.match(r"(\d+) more refusals", event.payload["detail"] or "")
        total += int(match.group(1)) if match else 1
    return total


def test_every_field_is_bounded_with_a_marker() -> None:
    event = access_event(
        who="x" * 1_000_000,
        role=None,
        action="SIGN_IN",
        outcome="REFUSED",
        detail="line one\nforged line",
        path="/" + "p" * 5000,
        study="S" * 500,
    )
    assert len(event.payload["who"]) < FIELD_LIMITS["who"] + 40
    assert event.payload["who"].endswith(f"[truncated {1_000_000 - FIELD_LIMITS['who']} chars]")
    assert "\n" not in event.payload["detail"]
    assert len(event.study) < FIELD_LIMITS["study"] + 40
    assert bounded(None, 5) is None and bounded("short", 5) == "short"


def test_a_flood_from_one_address_is_summarised_per_minute() -> None:
    log = Log()
    record = log.recorder()
    for _ in range(50):
        record(**refusal())
    assert len(log.events) == INDIVIDUAL_PER_MINUTE  # the rest are only counted so far
    log.now += timedelta(minutes=1)
    record(**refusal())  # a new minute: last minute's summary is written first
    summary = log.events[INDIVIDUAL_PER_MINUTE].payload
    assert summary["detail"].startswith(f"{50 - INDIVIDUAL_PER_MINUTE} more refusals of SIGN_IN")
    assert "wrong password x45" in summary["detail"] and "dr.adams x45" in summary["detail"]
    assert (summary["client"], summary["who"], summary["outcome"]) == (
        "203.0.113.9",
        "anonymous",
        "REFUSED",
    )
    record.flush()
    assert counted(log.events) == 51


def test_many_addresses_cannot_grow_the_log_without_bound_either() -> None:
    log = Log()
    record = log.recorder()
    for number in range(1000):
        record(**refusal(client=f"198.51.{number // 250}.{number % 250}"))
    record.flush()
    assert len(log.events) == ANONYMOUS_PER_MINUTE + 1
    assert "from many addresses" in log.events[-1].payload["detail"]
    assert counted(log.events) == 1000


def test_signed_in_refusals_and_allowed_actions_stay_individual_under_the_limit() -> None:
    log = Log()
    record = log.recorder()
    for _ in range(INDIVIDUAL_PER_MINUTE):
        record(**refusal(who="mon.lee", role="monitor", action="DECIDE", detail="role monitor"))
    for _ in range(20):
        record(**refusal(outcome="ALLOWED", role="committee"))
    assert len(log.events) == INDIVIDUAL_PER_MINUTE + 20
    record.flush()
    assert len(log.events) == INDIVIDUAL_PER_MINUTE + 20  # nothing was only counted


def test_a_refusal_about_an_unknown_study_is_filed_platform_wide() -> None:
    log = Log()
    record = log.recorder()
    record(**refusal(study="NOPE" * 100, role="monitor", action="LOCK"))
    record(**refusal(study="EXO1", role="monitor", action="LOCK"))
    unknown, known = log.events
    assert unknown.study == "*" and unknown.payload["detail"].startswith("[study 'NOPE")
    assert known.study == "EXO1"
