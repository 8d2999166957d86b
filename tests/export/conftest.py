"""Locks to export, each built once per session: the demo trial (23 subjects, the published
shape) and a generated 1,000-subject trial; and the demo's export written by the real CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli import cli
from services.demo.synthetic import write_synthetic_trial
from services.export.package import Package, build
from services.lock.snapshot import Snapshot, open_lock
from services.platform import Platform
from tests.signing import decide
from tests.store.trials import STUDY, copy_home

LOCK = "PRIMARY"
SYNTHETIC = "SYN"


@dataclass(frozen=True)
class Locked:
    home: Path
    study: str
    snapshot: Snapshot

    @property
    def report(self) -> dict:
        return json.loads(self.snapshot.files["report.json"])


def _lock(home: Path, study: str) -> Locked:
    platform = Platform.embedded(home)
    platform.lock(
        study,
        LOCK,
        "primary analysis of the completers",
        "dm.test",
        open_queries_reason="sites answer later",
    )
    snapshot = open_lock(platform.store, study, LOCK)
    platform.bus.close()
    return Locked(home, study, snapshot)


@pytest.fixture(scope="session")
def demo_lock(
    trial_templates: Callable[[bool], Path], tmp_path_factory: pytest.TempPathFactory
) -> Locked:
    home = copy_home(trial_templates(True), tmp_path_factory.mktemp("export-demo") / "home")
    return _lock(home, STUDY)


@pytest.fixture(scope="session")
def synthetic_lock(tmp_path_factory: pytest.TempPathFactory) -> Locked:
    """1,000 generated subjects, ingested, every conflict decided (if any), locked."""
    home = tmp_path_factory.mktemp("export-synthetic") / "home"
    platform = Platform.embedded(home)
    files = write_synthetic_trial(home / "files", 1000, seed=20261130, study=SYNTHETIC)
    platform.ingest(SYNTHETIC, list(files.values()))
    for c in platform.adjudicate(SYNTHETIC).open_conflicts().iter_rows(named=True):
        status = "NEW_TRACT" if c["type"] == "UNMATCHED_TRACT" else "NOT_EVALUABLE"
        decide(platform, c["conflict_id"], status=status, rationale="test", study=SYNTHETIC)
    platform.bus.close()
    return _lock(home, SYNTHETIC)


@pytest.fixture(scope="session")
def demo_package(demo_lock: Locked) -> Package:
    return build(demo_lock.snapshot)


@pytest.fixture(scope="session")
def demo_export(demo_lock: Locked, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tract export all` of the demo lock, as a statistician runs it."""
    out = tmp_path_factory.mktemp("export-out") / "submission"
    result = CliRunner().invoke(
        cli,
        [
            "--home",
            str(demo_lock.home),
            "export",
            "all",
            "--study",
            STUDY,
            "--lock",
            LOCK,
            "--out",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return out
