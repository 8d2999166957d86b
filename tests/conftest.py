"""Shared pytest fixtures."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

try:  # tests/ importable as a package (rootdir on sys.path)
    from tests import servers
except ModuleNotFoundError:  # pytest "prepend" import of tests/ as a plain directory
    import servers  # type: ignore[no-redef]

from tests.store.trials import build_home, copy_home

# =============================================================================================
# Real servers on loopback (see tests/servers.py and ../shared/spec/INFRA.md beside the repository).
#
# Session-scoped and lazy: a server starts only when a test first asks for it and is stopped
# at the end of the session. A missing binary is a fixture ERROR naming the package, never a
# skip. Share these servers; do not stop() them in a test. For outage tests ("broker down,
# then back") start a private one: `with servers.noida_broker(tmp_path) as b: b.stop() ...`.
# Isolation between tests comes from unique names: use topic_factory / bucket_factory.
# =============================================================================================


@pytest.fixture(scope="session")
def tansu() -> Iterator[servers.KafkaBroker]:
    """In-memory Tansu Kafka broker; ``tansu.bootstrap`` is "127.0.0.1:PORT"."""
    with servers.tansu_broker() as broker:
        yield broker


@pytest.fixture(scope="session")
def noida(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.KafkaBroker]:
    """noida-db Kafka broker (durable, Kafka 3.8-compatible); ``noida.bootstrap``."""
    with servers.noida_broker(tmp_path_factory.mktemp("noida-data")) as broker:
        yield broker


@pytest.fixture(params=["tansu", "noida"])
def broker(request: pytest.FixtureRequest) -> servers.KafkaBroker:
    """Each Kafka test runs on both brokers: code right on both is very likely right."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.S3Server]:
    """SeaweedFS S3 (versioning, object lock); ``.endpoint``, ``.access_key``, ``.minio()``."""
    with servers.seaweedfs_s3(tmp_path_factory.mktemp("seaweedfs-data")) as s3:
        yield s3


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[servers.S3Server]:
    """moto in-memory S3 for fast tests (no retention read-back); same shape as seaweedfs."""
    with servers.moto_s3() as s3:
        yield s3


def _unique(prefix: str, pattern: str, max_len: int) -> str:
    if not re.fullmatch(pattern, prefix):
        raise ValueError(f"prefix {prefix!r} must match {pattern}")
    return f"{prefix}-{uuid.uuid4().hex}"[:max_len]


@pytest.fixture
def topic_factory() -> Callable[..., str]:
    """``topic_factory("events")`` -> "events-<uuid hex>": a topic no other test uses."""

    def make(prefix: str = "test") -> str:
        return _unique(prefix, r"[A-Za-z0-9._-]{1,200}", 249)

    return make


@pytest.fixture
def bucket_factory() -> Callable[..., str]:
    """``bucket_factory("lock")`` -> "lock-<uuid hex>": a valid, unused S3 bucket name.

    Names only: the test creates the bucket with the options it needs (e.g. object lock).
    """

    def make(prefix: str = "test") -> str:
        return _unique(prefix, r"[a-z0-9][a-z0-9-]{0,29}", 63)

    return make


# ---------------------------------------------------------------- end of real-server fixtures


# =============================================================================================
# Trial homes: the demo trial ingested once per session, copied for each test that writes.
# =============================================================================================


@pytest.fixture(scope="session")
def trial_templates(tmp_path_factory: pytest.TempPathFactory) -> Callable[[bool], Path]:
    base = tmp_path_factory.getbasetemp() / "trial-templates"
    base.mkdir(exist_ok=True)
    return lambda decided: build_home(base / ("decided" if decided else "open"), decided)


@pytest.fixture(scope="session")
def demo_home(trial_templates: Callable[[bool], Path]) -> Path:
    """A home with the demo trial ingested and no decision taken (7 open conflicts); tests
    copy it before writing."""
    return trial_templates(False)


@pytest.fixture
def decided_home(trial_templates: Callable[[bool], Path], tmp_path: Path) -> Path:
    """A home whose demo study has every conflict decided: it can be locked."""
    return copy_home(trial_templates(True), tmp_path / "home")


@pytest.fixture
def open_home(trial_templates: Callable[[bool], Path], tmp_path: Path) -> Path:
    """A home whose demo study still has open conflicts: a lock must be refused."""
    return copy_home(trial_templates(False), tmp_path / "home")
