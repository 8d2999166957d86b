"""Every entry point imports ``services`` before Polars, so Polars' allocator gets the tuning
of ``services/__init__.py``, and a setting of the user's own is left alone."""

from __future__ import annotations

import os
import subprocess
import sys

from services import POLARS_ALLOCATOR


def allocator_seen_by_polars(environment: dict[str, str]) -> str:
    """``_RJEM_MALLOC_CONF`` as Polars leaves it after the CLI's imports (Polars adds its own
    defaults in front, then the setting it found: later options win)."""
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import services.cli, os; print(os.environ['_RJEM_MALLOC_CONF'])",
        ],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return shown.stdout.strip()


def test_the_cli_starts_polars_with_the_platforms_allocator_setting() -> None:
    environment = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    assert allocator_seen_by_polars(environment).endswith("," + POLARS_ALLOCATOR)


def test_a_users_own_allocator_setting_is_kept() -> None:
    environment = os.environ | {"_RJEM_MALLOC_CONF": "narenas:4"}
    seen = allocator_seen_by_polars(environment)
    assert seen.endswith(",narenas:4")
    assert POLARS_ALLOCATOR not in seen
