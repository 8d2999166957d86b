"""Sign-in that no stranger can turn into a denial of service (issue 9, item 7), over HTTP.

Failures are counted per account and client address, per address, and per account from all
addresses, in one SQLite transaction that checks and records before the password is checked.
The access log stays bounded: every field is truncated, and repeated refusals are aggregated.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import httpx
import polars as pl
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from services.demo.trial import DEMO_STUDY
from tests.web.conftest import PASSWORD, PEOPLE, Site, csrf_of, served

ATTACKER = ("203.0.113.9", 40000)
MEMBERS = [u for u, r in PEOPLE.items() if r in ("committee", "data_manager")]


def client_at(site: Site, address: tuple[str, int]) -> TestClient:
    return TestClient(site.app, base_url="http://testserver", client=address)


def post_sign_in(client: TestClient | httpx.Client, username: str, password: str) -> int:
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    return response.status_code


def access_events(site: Site) -> pl.DataFrame:
    frames = [site.platform.records("access", s).collect() for s in ("*", DEMO_STUDY)]
    return pl.concat(frames).sort("offset")


def last_refusal(site: Site) -> str:
    """Why the last refusal was refused (repeated ones are summarised: flush the summary)."""
    site.app.state.web.record.flush()
    refused = access_events(site).filter(pl.col("outcome") == "REFUSED")
    return refused["detail"].to_list()[-1]


def test_a_stranger_cannot_lock_members_out_of_their_own_sign_in(
    site_factory: Callable[..., Site],
) -> None:
    site = site_factory(max_failed_sign_ins=5)
    attacker = client_at(site, ATTACKER)
    for username in MEMBERS:  # 15 requests: five wrong passwords on each account
        assert [post_sign_in(attacker, username, "guess") for _ in range(5)] == [401] * 5
    for number, username in enumerate(MEMBERS):
        own = client_at(site, (f"10.0.0.{number + 2}", 50000))
        assert post_sign_in(own, username, PASSWORD) == 303, username
    # The stranger's own address stays locked out of those accounts, right password or not.
    assert post_sign_in(attacker, "dr.adams", PASSWORD) == 401
    assert "locked out" in last_refusal(site)


def test_one_address_failing_on_many_names_is_throttled(
    site_factory: Callable[..., Site],
) -> None:
    site = site_factory(max_failed_per_client=8)
    attacker = client_at(site, ATTACKER)
    for number in range(8):
        assert post_sign_in(attacker, f"guess.{number}", "guess") == 401
    assert post_sign_in(attacker, "mon.lee", PASSWORD) == 401  # even a right password
    assert "throttled" in last_refusal(site)
    assert post_sign_in(client_at(site, ("10.0.0.2", 50000)), "mon.lee", PASSWORD) == 303


def test_many_addresses_cannot_lock_the_owner_out(site_factory: Callable[..., Site]) -> None:
    site = site_factory(max_failed_per_account=6)
    home = client_at(site, ("10.0.0.2", 50000))
    assert post_sign_in(home, "dr.adams", PASSWORD) == 303  # the owner's usual address
    for number in range(6):  # a distributed attack: one guess from each of many addresses
        assert post_sign_in(client_at(site, (f"198.51.100.{number}", 1)), "dr.adams", "x") == 401
    newcomer = client_at(site, ("198.51.100.99", 1))
    assert post_sign_in(newcomer, "dr.adams", PASSWORD) == 401  # capped for new addresses
    assert "new addresses refused" in last_refusal(site)
    assert post_sign_in(client_at(site, ("10.0.0.2", 50001)), "dr.adams", PASSWORD) == 303


class GatedHasher(PasswordHasher):
    """argon2id (tiny costs) that holds every wrong-password check until the gate opens: the
    window in which concurrent sign-ins used to read the failure count before writing it."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.held = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        if password != PASSWORD:
            with self.lock:
                self.held += 1
            self.gate.wait(timeout=60)
        return super().verify(hash, password)


def test_concurrent_wrong_passwords_cannot_race_past_the_limit(
    site_factory: Callable[..., Site],
) -> None:
    """24 concurrent sign-ins from one address, 23 wrong and the right one last, against a
    real uvicorn server: at most the limit's worth of passwords is ever checked, and the
    right one, arriving past the limit, signs nobody in."""
    hasher = GatedHasher()
    site = site_factory(max_failed_sign_ins=5, hasher=hasher)
    with served(site.app) as base:
        clients = [httpx.Client(base_url=base, timeout=60) for _ in range(24)]
        pages = [c.get("/login").text for c in clients]  # each its own sign-in form
        answers: list[int] = []
        start = threading.Barrier(23)

        def wrong(number: int) -> None:
            start.wait(timeout=30)
            form = {
                "username": "dr.adams",
                "password": "wrong",
                "csrf_token": csrf_of(pages[number]),
            }
            answers.append(clients[number].post("/login", data=form).status_code)

        threads = [threading.Thread(target=wrong, args=(n,)) for n in range(23)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while hasher.held + len(answers) < 23:  # every wrong one is held or answered
            assert time.monotonic() < deadline, (hasher.held, answers)
            time.sleep(0.01)
        right = clients[23].post(
            "/login",
            data={"username": "dr.adams", "password": PASSWORD, "csrf_token": csrf_of(pages[23])},
            follow_redirects=False,
        )
        hasher.gate.set()
        for thread in threads:
            thread.join(timeout=60)
        for client in clients:
            client.close()
    assert right.status_code == 401 and "tract_session" not in right.headers.get("set-cookie", "")
    assert sorted(answers) == [401] * 23
    assert hasher.held <= 5  # no more passwords checked than the limit allows
    signed_in = access_events(site).filter(
        (pl.col("action") == "SIGN_IN") & (pl.col("outcome") == "ALLOWED")
    )
    assert signed_in.is_empty()


def test_a_huge_user_name_writes_a_bounded_access_event(site: Site) -> None:
    client = site.client()
    assert post_sign_in(client, "x" * 1_000_000, "guess") == 401
    event = access_events(site).row(-1, named=True)
    assert event["action"] == "SIGN_IN" and event["outcome"] == "REFUSED"
    assert len(event["who"]) < 200 and "[truncated" in event["who"]
    assert sum(len(str(v)) for v in event.values()) < 2_000
    assert site.users.path.stat().st_size < 200_000  # nor a huge row in the users file


def test_a_flood_of_refusals_is_aggregated(site: Site) -> None:
    attacker = client_at(site, ATTACKER)
    before = access_events(site).height
    attacker.get("/login")
    for _ in range(120):  # sign-in forms posted without their token: refused before any check
        attacker.post("/login", data={"username": "dr.adams", "password": "x", "csrf_token": "?"})
    assert access_events(site).height - before <= 12  # not 120
    site.app.state.web.record.flush()  # as at shutdown: the pending count is written
    added = access_events(site).slice(before)
    individual = added.filter(~pl.col("detail").str.contains("more refus"))
    counted = [
        int(m.group(1))
        for d in added["detail"].to_list()
        if (m := re.match(r"(\d+) more refus", d or ""))
    ]
    assert individual.height + sum(counted) == 120
    assert set(added["client"].to_list()) == {ATTACKER[0]}
