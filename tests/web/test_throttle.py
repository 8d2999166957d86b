"""Sign-in throttling in the users file, without HTTP: the rule, the counters, the race."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.errors import SignInRefusedError
from services.throttle import Counts, Limits, SignInThrottle, refusal
from services.users import UserStore
from tests.web.conftest import fast_hasher
from tests.web.test_sign_in_abuse import GatedHasher

PASSWORD = "correct horse battery"


def refused(call: Callable[..., object], *args: object) -> str:
    """The audit reason of a refused call (the person signing in sees a generic message)."""
    with pytest.raises(SignInRefusedError) as refusal_:
        call(*args)
    return refusal_.value.reason


LIMITS = Limits(per_pair=3, per_client=5, per_account=8, window=timedelta(minutes=15))


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        (Counts(pair=2, client=4, account=7, known_client=False), None),
        (Counts(pair=3, client=3, account=3, known_client=True), "locked out"),
        (Counts(pair=0, client=5, account=0, known_client=True), "throttled"),
        (Counts(pair=0, client=0, account=8, known_client=False), "new addresses refused"),
        (Counts(pair=0, client=0, account=99, known_client=True), None),
    ],
)
def test_the_rule(counts: Counts, expected: str | None) -> None:
    reason = refusal(counts, LIMITS)
    assert (reason is None) if expected is None else (expected in (reason or ""))


def test_failures_age_out_of_the_window(tmp_path: Path) -> None:
    throttle = SignInThrottle(tmp_path / "t.db", LIMITS)
    then = datetime(2026, 1, 1, 9, tzinfo=UTC)
    for _ in range(3):
        throttle.reserve("dr.adams", "10.0.0.1", then)
    assert "locked out" in refused(
        throttle.reserve, "dr.adams", "10.0.0.1", then + timedelta(minutes=14)
    )
    throttle.reserve("dr.adams", "10.0.0.1", then + timedelta(minutes=15, seconds=1))


def test_refused_attempts_are_not_counted(tmp_path: Path) -> None:
    """A stranger who keeps trying does not keep anyone locked out longer, nor grow the file."""
    throttle = SignInThrottle(tmp_path / "t.db", LIMITS)
    then = datetime(2026, 1, 1, 9, tzinfo=UTC)
    for _ in range(3):
        throttle.reserve("dr.adams", "203.0.113.9", then)
    for minute in range(1, 15):
        with pytest.raises(SignInRefusedError):
            throttle.reserve("dr.adams", "203.0.113.9", then + timedelta(minutes=minute))
    throttle.reserve("dr.adams", "203.0.113.9", then + timedelta(minutes=16))


def test_a_success_forgets_only_its_own_address(tmp_path: Path) -> None:
    store = UserStore(
        tmp_path / "u.db", hasher=fast_hasher(), max_failed_sign_ins=3, max_failed_per_account=5
    )
    store.add("dr.adams", "committee", PASSWORD)
    for address in ("203.0.113.1", "203.0.113.2"):
        for _ in range(2):
            with pytest.raises(SignInRefusedError):
                store.authenticate("dr.adams", "wrong one", address)
    store.authenticate("dr.adams", PASSWORD, "10.0.0.1")  # 4 failures elsewhere stay
    with pytest.raises(SignInRefusedError):
        store.authenticate("dr.adams", "wrong one", "203.0.113.3")
    reason = refused(store.authenticate, "dr.adams", PASSWORD, "203.0.113.4")
    assert "new addresses refused" in reason
    assert store.authenticate("dr.adams", PASSWORD, "10.0.0.1").username == "dr.adams"


def test_names_that_cannot_exist_share_one_bounded_key(tmp_path: Path) -> None:
    store = UserStore(
        tmp_path / "u.db", hasher=fast_hasher(), max_failed_sign_ins=50, max_failed_per_client=50
    )
    for number in range(20):
        reason = refused(store.authenticate, f"{number} " + "x" * 100_000, "p", "203.0.113.9")
        assert reason == "unknown user"
    assert store.path.stat().st_size < 100_000


def test_concurrent_wrong_passwords_reserve_before_checking(tmp_path: Path) -> None:
    """The race of item 7 without HTTP: 23 wrong passwords held inside the hash check, then
    the right one from the same address; only the limit's worth is ever checked."""
    hasher = GatedHasher()
    store = UserStore(tmp_path / "u.db", hasher=hasher, max_failed_sign_ins=5)
    store.add("dr.adams", "committee", PASSWORD)
    outcomes: list[str] = []

    def wrong() -> None:
        try:
            store.authenticate("dr.adams", "a wrong guess", "10.0.0.9")
        except SignInRefusedError as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=wrong) for _ in range(23)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while hasher.held + len(outcomes) < 23:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert "locked out" in refused(store.authenticate, "dr.adams", PASSWORD, "10.0.0.9")
    hasher.gate.set()
    for thread in threads:
        thread.join(timeout=60)
    assert hasher.held == 5 and outcomes.count("wrong password") == 5
    assert sum("locked out" in o for o in outcomes) == 18
