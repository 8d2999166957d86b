"""A drop folder: each new transfer file is ingested once, then moved beside its report.

Why a folder: sites and the imaging core lab deliver by file (SFTP, a synced share). A file is
taken once its size and mtime have stayed the same for one scan (so a half-written file waits;
senders should still write ``name.part`` and rename). It goes through the same
``Platform.ingest`` as ``tract ingest`` (validation, identity, accounting), then moves to
``processed/`` or ``refused/`` with ``<name>.report.json`` beside it. A ledger of content
hashes (``<home>/ingest/watch.db``) makes "once" survive a crash between publishing and
moving: the file is then moved with the report of the run that published it. The ledger also
keeps the ingest run id of an attempt before it publishes anything: a watcher killed while
publishing leaves rows on the bus under that run, and the retry of the same bytes joins it,
so those rows count as accepted by the run (not as duplicates of themselves) and the report
reads as a clean run's.

If the bus is unreachable (or the Kafka adjudicator is rebuilding its state, against which
identities are judged) the file stays where it is and is tried again on the next scan;
nothing is moved before it is published.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import schemas
from services.errors import TractError, TransientError
from services.events import utc_now
from services.files import private_database, private_dir, write_private
from services.ingest.service import new_run_id
from services.platform import Platform

log = logging.getLogger(__name__)

IGNORED_SUFFIXES = (".part", ".partial", ".tmp", ".report.json")
PROCESSED, REFUSED = "processed", "refused"


@dataclass(frozen=True)
class Handled:
    file: str
    outcome: str  # processed | refused | repeat
    moved_to: Path
    report: dict[str, Any]


def kind_for(name: str) -> str | None:
    """The kind a dropped file carries: its name is, or ends with, a transfer file name
    (``site03-2025-03-04.clinical_exams.csv``); None lets ingest refuse it with the list."""
    matches = [(f, c.kind) for f, c in schemas.source_contracts().items() if name.endswith(f)]
    return max(matches, default=(None, None), key=lambda m: len(m[0] or ""))[1]


class WatchLedgerError(TractError):
    """The watcher's ledger cannot be read or written."""


class Ledger:
    """Which bytes were ingested (per study and sha256), under which run, with which report."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / "ingest" / "watch.db"
        private_dir(self.path.parent)  # the ledger names the trial's files and their reports
        private_database(self.path)
        with self._guarded("open"):
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS files (study TEXT, sha256 TEXT, name TEXT, state TEXT, "
                "report TEXT, at TEXT, PRIMARY KEY (study, sha256))"
            )
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
            if "run_id" not in columns:  # a ledger written before runs were kept
                self._db.execute("ALTER TABLE files ADD COLUMN run_id TEXT")

    @contextlib.contextmanager
    def _guarded(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise WatchLedgerError(
                f"cannot {doing} the drop folder's ledger {self.path} ({exc}); stop the watcher "
                "and move the file aside: files are then ingested again (identical rows count as "
                "duplicates, nothing is applied twice)"
            ) from None

    def done(self, study: str, sha: str) -> tuple[dict[str, Any], str] | None:
        """The report and time of an ingest of these bytes that finished, if any."""
        with self._guarded("read"):
            row = self._db.execute(
                "SELECT report, at FROM files WHERE study = ? AND sha256 = ? AND state = 'done'",
                (study, sha),
            ).fetchone()
        return None if row is None else (json.loads(row[0]), row[1])

    def start(self, study: str, sha: str, name: str) -> str:
        """The run id to ingest these bytes under: the run of an attempt that did not finish
        (killed while publishing), else a new one, recorded before anything is published."""
        with self._guarded("write"):
            row = self._db.execute(
                "SELECT run_id FROM files WHERE study = ? AND sha256 = ? AND state = 'publishing'",
                (study, sha),
            ).fetchone()
            run_id = row[0] if row and row[0] else new_run_id()
            self._db.execute(
                "INSERT OR REPLACE INTO files (study, sha256, name, state, report, at, run_id) "
                "VALUES (?, ?, ?, 'publishing', NULL, ?, ?)",
                (study, sha, name, utc_now(), run_id),
            )
        return run_id

    def finish(self, study: str, sha: str, report: dict[str, Any]) -> None:
        with self._guarded("write"):
            self._db.execute(
                "UPDATE files SET state = 'done', report = ?, at = ? WHERE study = ? AND sha256 = ?",
                (json.dumps(report), utc_now(), study, sha),
            )

    def close(self) -> None:
        self._db.close()


class DropFolder:
    def __init__(self, folder: Path, study: str, platform: Platform, home: Path) -> None:
        self.folder, self.study, self.platform = Path(folder), study, platform
        for sub in (PROCESSED, REFUSED):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self._seen: dict[Path, tuple[int, int]] = {}
        self.ledger = Ledger(home)

    def ready(self) -> list[Path]:
        """Files whose size and mtime did not change since the previous scan, oldest first."""
        now: dict[Path, tuple[int, int]] = {}
        for path in self.folder.iterdir():
            if (
                not path.is_file()
                or path.name.startswith(".")
                or path.name.endswith(IGNORED_SUFFIXES)
            ):
                continue
            stat = path.stat()
            now[path] = (stat.st_size, stat.st_mtime_ns)
        stable = [p for p, sig in now.items() if self._seen.get(p) == sig and sig[0] > 0]
        self._seen = now
        return sorted(stable, key=lambda p: (now[p][1], p.name))

    def handle(self, path: Path) -> Handled:
        """Ingest one file (unless its exact bytes were ingested before) and move it."""
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        done = self.ledger.done(self.study, sha)
        if done is not None:
            report = done[0] | {
                "repeat": f"identical bytes were ingested at {done[1]}; nothing published again"
            }
            return self._move(path, PROCESSED, report, "repeat", sha)
        run_id = self.ledger.start(self.study, sha, path.name)
        outcome = self.platform.ingest(self.study, [path], kind_for(path.name), run_id=run_id)
        if outcome.refused:
            refusal = outcome.refused[0]
            report = {
                "file": path.name,
                "study": self.study,
                "refused": str(refusal),
                "problem": refusal.problem,
                "fix": refusal.fix,
            }
            where, label = REFUSED, "refused"
        else:
            report = outcome.reports[0].to_dict() | {"study": self.study, "sha256": sha}
            where, label = PROCESSED, "processed"
        self.ledger.finish(self.study, sha, report)
        return self._move(path, where, report, label, sha)

    def _move(self, path: Path, where: str, report: dict, label: str, sha: str) -> Handled:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self.folder / where / f"{stamp}-{path.name}"
        if target.exists():
            target = target.with_name(f"{stamp}-{sha[:8]}-{path.name}")
        report_path = target.with_name(target.name + ".report.json")
        # whole or not at all: whoever watches processed/ never reads half a report
        write_private(report_path, (json.dumps(report, indent=2, default=str) + "\n").encode())
        path.replace(target)
        self._seen.pop(path, None)
        return Handled(path.name, label, target, report)

    def run(
        self,
        should_stop: Callable[[], bool],
        poll_s: float = 1.0,
        on_file: Callable[[Handled], None] | None = None,
    ) -> None:
        """Scan every ``poll_s`` until ``should_stop()``; an unreachable bus waits and retries."""
        delay = poll_s
        while not should_stop():
            try:
                for path in self.ready():
                    if should_stop():
                        break
                    handled = self.handle(path)
                    log.info("%s: %s -> %s", handled.file, handled.outcome, handled.moved_to)
                    if on_file:
                        on_file(handled)
                delay = poll_s
            except TransientError as exc:  # a broker down, the adjudicator rebuilding
                delay = min(max(delay * 2, 2.0), 10.0)
                log.error("%s; the file stays in %s, retrying in %.0fs", exc, self.folder, delay)
                self._seen = {}
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not should_stop():
                time.sleep(min(0.2, poll_s))

    def close(self) -> None:
        self.ledger.close()


def serve(settings: Any, study: str, folder: Path, poll_s: float, as_json: bool) -> None:
    """``tract ingest --watch``: serve the folder until SIGTERM or SIGINT."""
    import dataclasses

    import click

    from services.serve import log_to_stderr, stop_on_signals

    log_to_stderr()
    # the watcher never waits for the adjudicator: identity is judged against its state plus
    # what this process sent, and the adjudicator refuses any conflicting duplicate that races
    platform = Platform.from_settings(dataclasses.replace(settings, kafka_apply_wait_s=0.0))

    def show(handled: Handled) -> None:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "file": handled.file,
                        "outcome": handled.outcome,
                        "moved_to": str(handled.moved_to),
                        "report": handled.report,
                    },
                    default=str,
                )
            )
        else:
            click.echo(f"{handled.outcome}: {handled.file} -> {handled.moved_to}")

    drop = DropFolder(folder, study, platform, settings.home)
    log.info("watching %s for study %s (bus %s)", folder, study, settings.bus)
    try:
        drop.run(stop_on_signals(), poll_s, show)
    finally:
        drop.close()
        platform.bus.close()
