"""The same web page on the Kafka bus: a real Kafka-protocol broker (Tansu), the adjudicator
service as its own process, and the app over ``Platform.from_settings`` with ``kafka://``.

Votes signed on the page are published to Kafka, applied by the service, and once two members
have signed the decision is shown; access records (sign-ins, refusals) travel the same way into
the audit trail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.accounts import account_events
from services.config import Settings
from services.demo.trial import DEMO_STUDY, write_demo_trial
from services.platform import Platform
from services.stream.view import AppliedView
from services.users import UserStore
from services.web.app import create_app
from services.web.settings import WebSettings
from tests.servers import wait_for
from tests.web.conftest import (
    FULL_NAMES,
    PASSWORD,
    PEOPLE,
    READER_DISAGREEMENT_S05,
    fast_hasher,
    hidden_fields,
    sign_in,
)

pytestmark = [
    pytest.mark.slow,
    # kafka-python reads its protocol files with importlib APIs Python deprecates: not ours.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:kafka.*"),
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]
TRACT = str(Path(sys.executable).parent / "tract")


@pytest.fixture
def kafka_app(
    tansu: Any, topic_factory: Callable[..., str], tmp_path: Path
) -> Iterator[tuple[TestClient, Platform]]:
    home = tmp_path / "home"
    env = {
        "TRACT_HOME": str(home),
        "TRACT_BUS": f"kafka://{tansu.bootstrap}",
        "TRACT_KAFKA_PREFIX": topic_factory("web") + ".",
        "TRACT_KAFKA_TIMEOUT_S": "5",
    }
    log = (tmp_path / "adjudicator.log").open("wb")
    service = subprocess.Popen(
        [TRACT, "adjudicator", "run"],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    platform = Platform.from_settings(Settings.from_env(env))
    try:
        state = AppliedView.at(home)
        wait_for(lambda: state.heartbeat_age() is not None, 60, "the adjudicator to run")
        files = write_demo_trial(tmp_path / "files")
        platform.ingest(DEMO_STUDY, list(files.values()))  # returns once the service applied it
        assert platform.adjudicate(DEMO_STUDY).open_conflicts().height == 7
        settings = WebSettings.from_env(home, environ={})
        users = UserStore(settings.users_db, hasher=fast_hasher())
        for name, role in PEOPLE.items():
            users.add(name, role, PASSWORD, FULL_NAMES[name], temporary=False)
        platform.record(account_events(users, PEOPLE, "ADD", "cli:test"))  # on Kafka
        yield TestClient(create_app(platform, settings, users)), platform
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(timeout=10)
        log.close()
        platform.bus.close()


def test_the_committee_decides_on_kafka_as_on_the_embedded_log(
    kafka_app: tuple[TestClient, Platform],
) -> None:
    client, platform = kafka_app
    sign_in(client, "dr.adams")
    assert client.get("/conflicts").text.count("data-conflict=") == 7
    page = client.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text
    assert 'data-testid="mri-MRI_FINAL"' in page and "RAD-A" not in page
    assert 'data-testid="results-hidden"' in client.get("/").text  # no efficacy figures

    def sign_vote(member: TestClient) -> str:
        shown = hidden_fields(member.get(f"/conflicts/{READER_DISAGREEMENT_S05}").text)
        review = member.post(
            f"/conflicts/{READER_DISAGREEMENT_S05}/decision",
            data={
                "csrf_token": shown["csrf_token"],
                "study": DEMO_STUDY,
                "status": "CLOSED",
                "rationale": "committee consensus read: healed",
                "seen_fingerprint": shown["seen_fingerprint"],
                "seen_decision": shown["seen_decision"],
            },
        )
        assert review.status_code == 200, review.text
        done = member.post(
            f"/conflicts/{READER_DISAGREEMENT_S05}/decision/confirm",
            data=hidden_fields(review.text) | {"password": PASSWORD},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text
        return member.get(done.headers["location"]).text

    page = sign_vote(client)
    assert 'data-testid="conflict-status">Open' in page and "1 of 2 signatures" in page
    baker = TestClient(client.app)
    sign_in(baker, "dr.baker")
    assert 'data-testid="conflict-status">Decided' in sign_vote(baker)

    monitor = TestClient(client.app)
    token = sign_in(monitor, "mon.lee")
    assert 'data-testid="category-S05">Full closure' in monitor.get("/").text
    refused = monitor.post(
        f"/conflicts/{READER_DISAGREEMENT_S05}/decision",
        data={"csrf_token": token, "study": DEMO_STUDY, "status": "NOT_CLOSED"},
    )
    assert refused.status_code == 403
    # Access records reach the trail once the service has applied them.
    trail = wait_for(
        lambda: (text := monitor.get("/audit?kind=access").text).count("VOTE REFUSED") and text,
        60,
        "the refusal to reach the audit trail",
        every=0.2,
    )
    assert "SIGN_IN ALLOWED" in trail and "mon.lee (monitor)" in trail
    votes = platform.votes(DEMO_STUDY)
    assert votes["voter"].to_list() == ["dr.adams", "dr.baker"]
    assert votes["printed_name"].to_list() == ["Dr Anna Adams", "Dr Ben Baker"]
