"""Where a lock signed for the DAG stands (services.lock.lock.lock_requests): a pure function of
the lock_request and lock events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from services.lock.lock import EXPIRED, OTHER, REQUEST_VALID_FOR, TAKEN, WAITING, lock_requests

SIGNED = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _request(request_id: str, lock_id: str, offset: int, reason: str = "primary") -> dict:
    return {
        "request_id": request_id,
        "lock_id": lock_id,
        "level": "soft",
        "reason": reason,
        "signer": "dm.jones",
        "printed_name": "Dana Jones",
        "meaning": f"locked EXO1 {lock_id} (soft lock): {reason}",
        "signed_at": SIGNED,
        "offset": offset,
    }


def _lock(lock_id: str, action: str, request_id: str) -> dict:
    return {"lock_id": lock_id, "action": action, "request_id": request_id}


def test_each_request_shows_its_latest_signature_and_where_it_stands() -> None:
    requests = pl.DataFrame(
        [
            _request("LR-a", "PRIMARY", 0),
            _request("LR-b", "PRIMARY", 1, "same lock id, another request"),
            _request("LR-c", "INTERIM", 2),
            _request("LR-d", "FINAL", 3),
            _request("LR-a", "PRIMARY", 4),  # signed again: shown once, the latest signature
        ]
    )
    locks = pl.DataFrame(
        [
            _lock("PRIMARY", "CLAIM", "LR-a"),
            _lock("PRIMARY", "LOCK", "LR-a"),
            _lock("INTERIM", "CLAIM", "LR-c"),  # claimed, not yet published
        ]
    )
    shown = lock_requests(requests, locks, now=SIGNED)
    assert [(r["request_id"], r["state"]) for r in shown] == [
        ("LR-a", TAKEN),
        ("LR-d", WAITING),
        ("LR-c", WAITING),
        ("LR-b", OTHER),
    ]
    assert shown[0]["signature"] == (
        "Dana Jones (dm.jones), 2026-12-01 09:30:00 UTC: locked EXO1 PRIMARY (soft lock): primary"
    )
    assert lock_requests(requests.clear(), locks, now=SIGNED) == []


def test_a_request_not_taken_in_time_expires_unless_its_run_claimed_its_lock_id() -> None:
    """A signature consents to locking the study as it stands then: unclaimed past
    REQUEST_VALID_FOR, a request is shown expired; one whose run claimed in time may finish."""
    requests = pl.DataFrame(
        [
            _request("LR-a", "PRIMARY", 0),
            _request("LR-b", "INTERIM", 1),  # its run claimed the id, then stopped
            _request("LR-c", "FINAL", 2),
        ]
    )
    locks = pl.DataFrame(
        [
            _lock("INTERIM", "CLAIM", "LR-b"),
            _lock("FINAL", "CLAIM", "LR-c"),
            _lock("FINAL", "LOCK", "LR-c"),
        ]
    )

    def states(now: datetime) -> dict[str, str]:
        return {r["request_id"]: r["state"] for r in lock_requests(requests, locks, now)}

    assert states(SIGNED + REQUEST_VALID_FOR) == {"LR-a": WAITING, "LR-b": WAITING, "LR-c": TAKEN}
    late = SIGNED + REQUEST_VALID_FOR + timedelta(seconds=1)
    assert states(late) == {"LR-a": EXPIRED, "LR-b": WAITING, "LR-c": TAKEN}
