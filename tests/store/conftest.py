"""Fixtures for lock tests: trial homes (built once, copied per test)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.store.trials import build_home, copy_home


@pytest.fixture(scope="session")
def trial_templates(tmp_path_factory: pytest.TempPathFactory) -> Callable[[bool], Path]:
    base = tmp_path_factory.getbasetemp() / "trial-templates"
    base.mkdir(exist_ok=True)
    return lambda decided: build_home(base / ("decided" if decided else "open"), decided)


@pytest.fixture
def decided_home(trial_templates: Callable[[bool], Path], tmp_path: Path) -> Path:
    """A home whose demo study has every conflict decided: it can be locked."""
    return copy_home(trial_templates(True), tmp_path / "home")


@pytest.fixture
def open_home(trial_templates: Callable[[bool], Path], tmp_path: Path) -> Path:
    """A home whose demo study still has open conflicts: a lock must be refused."""
    return copy_home(trial_templates(False), tmp_path / "home")
