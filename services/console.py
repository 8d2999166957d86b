"""What every command of the ``tract`` CLI shares: the context (settings, the platform opened
once, the study asked for), the common options, and how results and refusals are printed.

Commands that live beside their adapters (locks, exports, the web page's users) import this,
never ``services.cli``, so the CLI's modules do not import each other in a circle.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import polars as pl

from services.config import Settings
from services.platform import Platform


def fail(message: str, code: int = 1) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


class Context:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.home
        self._platform: Platform | None = None

    @property
    def platform(self) -> Platform:
        if self._platform is None:
            self._platform = Platform.from_settings(self.settings)
        return self._platform

    def store_and_locks(self) -> tuple[Any, pl.DataFrame | None]:
        """The store, and the log's lock events when this home has a log (an analyst's
        machine may have only the store: locks are then checked against their manifests)."""
        from services.store import open_store

        if self.settings.bus == "embedded" and not (self.home / "log").exists():
            return open_store(self.settings), None
        platform = self.platform
        return platform.store, platform.source.records("lock").collect()

    def study(self, study: str | None) -> str:
        """The named study (which this home must hold), or the only one there is."""
        if study:
            return self.platform.check_study(study)
        studies = self.platform.studies()
        if len(studies) == 1:
            return studies[0]
        fail(
            f"name a study with --study; {self.home} holds {', '.join(studies) or 'none yet (ingest first)'}"
        )
        raise AssertionError


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
study_option = click.option("--study", help="Study id (default: the only study in the home).")
