"""The platform assembled: an event log, the maintained state, an object store and a rule set,
with the operations the CLI, the web page and the DAGs all call. Adapters choose the log and
the store; the operations are the same on every one.

Data walks one way: ingest -> log -> state -> lock. The platform hands each layer only what it
reads (records, a store, a way to publish), never itself.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

import schemas
from services.adjudicator.engine import Adjudication
from services.adjudicator.errors import (
    AdjudicatorError,
    StaleReviewError,
    UnknownConflictError,
)
from services.adjudicator.ruleset import RuleSet, load_ruleset
from services.adjudicator.votes import Ballot, ballot, decisions_from_votes, make_vote
from services.bus import EventBus, open_bus
from services.config import Settings
from services.errors import TractError
from services.events import Event, among
from services.ingest.errors import FileRefusedError
from services.ingest.identity import known_from_records
from services.ingest.report import IngestReport
from services.ingest.service import ParsedFile, digest_rows, ingest_parsed, parse_file
from services.lock.sources import Anchor, LockSources
from services.log import EventLog
from services.log.segment import Batch
from services.signatures import (
    APPROVE_UNLOCK,
    RAISE_LOCK,
    REQUEST_UNLOCK,
    VOTE,
    Credentials,
    Directory,
    Signature,
    SignatureRefusedError,
    sign,
    sign_as,
)
from services.state import MaintainedState, Records, adjudicate_study
from services.state.compare import state_differences
from services.state.maintained import KEPT, TABLES, in_key_order
from services.state.postlock import LockBaseline, flag_changes
from services.state.records import Cut, RecordsAt, lock_cut, lock_in_force
from services.store import ObjectStore, open_store

FEW_IDS = 1_000
"""Up to this many record ids, the identity check filters the log by them (a correction: the
Parquet reader skips the row groups that cannot hold them); above, it joins."""

if TYPE_CHECKING:
    from services.lock.unlock import UnlockRequest


@dataclass(frozen=True)
class IngestOutcome:
    reports: tuple[IngestReport, ...]
    refused: tuple[FileRefusedError, ...]


class UnknownStudyError(AdjudicatorError):
    """A study this home holds nothing of."""


def _parse(path: Path, kind: str | None) -> ParsedFile | FileRefusedError:
    """A file read and validated, or why it is refused (whatever goes wrong reading it)."""
    try:
        return parse_file(path, kind)
    except FileRefusedError as exc:
        return exc
    except TractError:
        raise
    except Exception as exc:
        return _unreadable(path, exc)


READ_AHEAD_BYTES = 220_000_000
"""Files are read ahead of their turn, in order in one background thread, while the files
held (being read, read and waiting, or being checked until their frames are let go) stay
under this together; the next file is read whenever nothing else is held. At 100,000
subjects the two largest files are never held together: peak 1.25-1.29 GB (1.5-1.6 GB with
two files read at once)."""


class _ReadAhead:
    """Parsed files in order, read ahead in ``pool`` within :data:`READ_AHEAD_BYTES`: a
    file's size is held from when its reading is asked for until :meth:`release` (its frames
    are let go while its batches are still being written, so the next file is read then)."""

    def __init__(self, files: list[Path], kind: str | None, pool: ThreadPoolExecutor) -> None:
        self.files, self.kind, self.pool = files, kind, pool
        self.sizes = [_size(path) for path in files]
        self.reading: dict[int, Future[ParsedFile | FileRefusedError]] = {}
        self.held: dict[int, int] = {}
        self.next = 0

    def take(self, i: int) -> ParsedFile | FileRefusedError:
        """File ``i`` parsed (every earlier file released: it is being read, or is next)."""
        self._fill()
        return self.reading.pop(i).result()

    def release(self, i: int) -> None:
        self.held.pop(i, None)
        self._fill()

    def _fill(self) -> None:
        while self.next < len(self.files) and (
            not self.held or sum(self.held.values()) + self.sizes[self.next] <= READ_AHEAD_BYTES
        ):
            i, self.next = self.next, self.next + 1
            self.held[i] = self.sizes[i]
            self.reading[i] = self.pool.submit(_parse, self.files[i], self.kind)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # reading it says why
        return 0


def _unreadable(path: Path, exc: Exception) -> FileRefusedError:
    return FileRefusedError(
        path.name,
        f"could not be read ({type(exc).__name__}: {str(exc)[:200]})",
        "check the file's format against DATA_TRANSFER.md; if it looks right, "
        "report it to the tract maintainers with the file",
    )


class Platform:
    def __init__(
        self,
        bus: EventBus,
        source: Records,
        store: ObjectStore,
        rules: RuleSet | None = None,
        home: Path | None = None,
    ) -> None:
        self.bus, self.source, self.store = bus, source, store
        self.rules = rules or load_ruleset()
        self.home = Path(home) if home is not None else Path("tract-data")
        self.log = source if isinstance(source, EventLog) else None
        follow = getattr(source, "maintained_state", None)  # Kafka: the service's, read here
        if follow is not None:
            self.state: MaintainedState | None = follow(self.rules, self._baseline)
        elif self.log is not None:
            self.state = MaintainedState(self.home / "state", self.log, self.rules, self._baseline)
        else:
            self.state = None

    @classmethod
    def embedded(cls, home: Path | str, rules: RuleSet | None = None) -> Platform:
        """The default: an event log and an object-store folder under ``home``."""
        return cls.from_settings(Settings(home=Path(home)), rules)

    @classmethod
    def from_settings(cls, settings: Settings, rules: RuleSet | None = None) -> Platform:
        """The adapters the settings name (embedded log or Kafka; local folder or S3)."""
        if settings.bus.startswith("kafka://"):
            from services.stream import open_kafka  # the source: the adjudicator's state

            bus, source = open_kafka(settings)
        else:
            bus, source = open_bus(settings)
        return cls(bus, source, open_store(settings), rules, settings.home)

    def exclusive(self) -> contextlib.AbstractContextManager[Any]:
        """The log's writer lock where the log has one (the embedded log); Kafka ingest has one
        writer per topic and the adjudicator service re-checks identities."""
        if self.log is not None:
            return self.log.exclusive()
        return contextlib.nullcontext()

    # ingest ---------------------------------------------------------------------------------
    def known_records(
        self, kind: str, study: str, ids: pl.Series, excluding_run: str | None = None
    ) -> pl.DataFrame:
        """(record_id, version, content_hash) the log holds for ``ids``, plus what this
        process sent and the service may not have applied yet (Kafka); the rows of
        ``excluding_run`` are left out (a retry joining a killed attempt's run counts them as
        its own)."""
        contract = schemas.contract(kind)
        columns = (contract.id_field, contract.version_field, "content_hash", "ingest_run")
        records = self.source.records(kind, study, columns=columns)
        if ids.len() <= FEW_IDS:  # a filter the Parquet reader prunes row groups with
            records = records.filter(among(contract.id_field, ids))
        else:  # a join: faster than a set of a whole file's ids
            wanted = ids.to_frame(contract.id_field).lazy()
            records = records.join(wanted, on=contract.id_field, how="semi")
        if excluding_run is not None:
            records = records.filter(pl.col("ingest_run").ne_missing(excluding_run))
        frame = known_from_records(records, contract)
        recent = getattr(self.bus, "recent_identities", None)
        return frame if recent is None else pl.concat([frame, recent(kind, study)])

    def ingest(
        self,
        study: str,
        paths: list[Path],
        kind: str | None = None,
        on_file: Callable[[str, IngestReport | FileRefusedError, float], None] | None = None,
        run_id: str | None = None,
    ) -> IngestOutcome:
        """Ingest each file; a refused file applies nothing and the others go on. Whatever goes
        wrong with one file (short of the log itself failing) is its refusal, never a traceback
        that hides the rest. ``on_file(name, report or refusal, seconds)`` follows progress.
        ``run_id`` (one file): the run to join, a killed attempt's (a watcher's retry)."""
        if run_id is not None and len(paths) != 1:
            raise ValueError("run_id names the run of one file")
        reports: list[IngestReport] = []
        refused: list[FileRefusedError] = []
        self.check_log()
        files = [Path(p) for p in paths]
        with ThreadPoolExecutor(max_workers=1) as pool:  # Polars lets go of the GIL
            ahead = _ReadAhead(files, kind, pool)
            for i, path in enumerate(files):
                started = time.perf_counter()
                result = self._apply(study, ahead.take(i), run_id, lambda i=i: ahead.release(i))
                ahead.release(i)
                if isinstance(result, FileRefusedError):
                    refused.append(result)
                else:
                    reports.append(result)
                if on_file is not None:
                    on_file(path.name, result, time.perf_counter() - started)
        self.sync_conflicts(study)
        return IngestOutcome(tuple(reports), tuple(refused))

    def _apply(
        self,
        study: str,
        parsed: ParsedFile | FileRefusedError,
        run_id: str | None,
        released: Callable[[], None] = lambda: None,
    ) -> IngestReport | FileRefusedError:
        """Digest a parsed file's rows, then check their identities and append its batches
        under the writer lock; ``released()`` is called once the parsed file's frames are let
        go (the caller holds no other reference), so the next file can be read while the
        batches are written (the caller releases the file in any case once this returns)."""
        if isinstance(parsed, FileRefusedError):
            return parsed
        known = functools.partial(self.known_records, excluding_run=run_id)
        path = parsed.path
        try:
            parsed = digest_rows(parsed)
            with self.exclusive():  # identity check and append: one ingest at a time
                run = ingest_parsed(parsed, study, known, run_id)
                del parsed
                released()
                self.append(list(run.batches))
            return run.report
        except FileRefusedError as exc:
            return exc
        except TractError:
            raise  # the log or the bus failed: nothing more can be applied
        except Exception as exc:
            return _unreadable(path, exc)

    def append(self, batches: list[Batch]) -> int:
        """Append frames (one commit on the embedded log; per-event records on Kafka)."""
        self.check_log()
        return self.bus.append(batches)

    def publish(self, events: list[Event]) -> int:
        self.check_log()
        return self.bus.publish(events)

    def record(self, events: Sequence[Event]) -> int:
        """Publish ``events`` and wait until they are applied (Kafka: by the adjudicator
        service; embedded: the state caught up), so the next read, in this process or another,
        sees them (an account recorded, then a signature; a lock event, then its state)."""
        count = self.publish(list(events))
        self.sync_conflicts()
        return count

    def check_log(self) -> None:
        """Before any write: a log that lost committed events is refused, never written on."""
        if self.state is not None:
            self.state.check_log()

    # reading --------------------------------------------------------------------------------
    def records(
        self,
        kind: str,
        study: str,
        upto: Cut | None = None,
        subjects: Collection[str] | None = None,
    ) -> pl.LazyFrame:
        """Every accepted version of a kind's records for a study: its contract's columns with
        ``offset`` and ``event_id``, optionally only those before the cut ``upto`` (of
        ``subjects``: the subject the log files each event under, which a dead letter takes from
        its source row); the log's own records add the envelope and provenance:
        ``self.source.records``."""
        limit = None if upto is None else upto.get(kind, 0)
        columns = ("offset", "event_id", *schemas.contract(kind).columns)
        return self.source.records(kind, study, limit, subjects).select(columns)

    def studies(self) -> list[str]:
        return self.source.studies()

    def check_study(self, study: str) -> str:
        """``study`` if this home holds it, else :class:`UnknownStudyError` naming those it does."""
        studies = self.studies()
        if study not in studies:
            raise UnknownStudyError(
                f"study {study!r} has no data in this home; it holds "
                + (", ".join(studies) if studies else "no study yet (ingest first)")
            )
        return study

    # site queries (services/queries.py) -----------------------------------------------------
    def reader(self, study: str) -> Callable[..., pl.DataFrame]:
        """``read(kind, subjects=None)``: ``study``'s records of a kind, as the queries read them."""

        def read(kind: str, subjects: Collection[str] | None = None) -> pl.DataFrame:
            frame = self.records(kind, study)
            if subjects is not None:
                frame = frame.filter(pl.col("subject_id").is_in(list(subjects)))
            return frame.collect()

        return read

    def queries(self, study: str) -> pl.DataFrame:
        """Every site query of ``study`` with its status (see :mod:`services.queries`)."""
        from services.queries import site_queries

        return site_queries(self.reader(study), self.conflicts(study))

    def act_on_query(
        self, study: str, query_id: str, action: str, note: str, by: str
    ) -> dict[str, Any]:
        """Record the site's answer (ANSWERED), a review (CLOSED) or a query sent back
        (REOPENED); refused with the reason when the query's state does not allow it."""
        from services.queries import check_action, find, query_event

        with self.exclusive():  # the check and the write see the same log
            query = find(self.queries(self.check_study(study)), query_id, study)
            event = query_event(study, query, action, check_action(query, action, note), by)
            self.publish([event])
        self.sync_conflicts(study)
        return event.payload

    def adjudicate(
        self, study: str, upto: Cut | None = None, tables: Collection[str] = TABLES
    ) -> Adjudication:
        """The study's outcomes: the maintained state now, or computed at the cut ``upto``.
        ``tables``: from the state, only those (its visits are computed in full when asked)."""
        if self.state is not None and (upto is None or self._unchanged_since(study, upto)):
            return self.state.adjudication(study, tables=tables)
        return self._computed(study, upto)

    def conflicts(self, study: str, upto: Cut | None = None) -> pl.DataFrame:
        """The study's conflicts, every status (at the cut ``upto``: see :meth:`adjudicate`)."""
        return self.adjudicate(study, upto, ("conflicts",)).conflicts

    def _computed(self, study: str, upto: Cut | None = None) -> Adjudication:
        """The study's outcomes computed from the log's records (now, or at the cut ``upto``),
        never read from the maintained state: the same tables as the state's."""
        lock = lock_in_force(RecordsAt(self.source, upto) if upto else self.source, study)
        result = adjudicate_study(self.source, study, self.rules, upto, lock_cut=lock_cut(lock))
        baseline = self._baseline(study, lock) if lock else None
        return in_key_order(flag_changes(result, baseline))

    def outcomes(
        self,
        study: str,
        subjects: Collection[str] | None = None,
        tables: Collection[str] = TABLES,
        ordered: bool = True,
    ) -> Adjudication:
        """The current outcomes of ``study`` (of ``subjects`` only, when given: a point read of
        the maintained state, whatever the size of the trial; ``tables``: only those;
        ``ordered=False``: rows in no set order, for a reader that only counts)."""
        if self.state is not None:
            return self.state.adjudication(study, subjects, tables, ordered)
        result = self.adjudicate(study)
        if subjects is None:
            return result
        wanted = pl.Series(list(subjects), dtype=pl.String)
        return Adjudication(
            **{
                f.name: getattr(result, f.name).filter(pl.col("subject_id").is_in(wanted.implode()))
                if isinstance(getattr(result, f.name), pl.DataFrame)
                else getattr(result, f.name)
                for f in fields(result)
            }
        )

    def checked_outcomes(
        self, study: str, subjects: Collection[str]
    ) -> tuple[Adjudication, list[tuple[str, str]]]:
        """``subjects``' outcomes as the log gives them, and how the maintained state's files
        differ from them (nothing, unless they were edited by hand): what a page about one
        subject shows, so an edit of the state's files never shows there (it costs a point
        adjudication, ~0.2 s at 100,000 subjects)."""
        kept = self.outcomes(study, subjects, tables=KEPT)  # caught up with the log first
        if self.state is None:
            return kept, []
        fresh = self.state.recomputed(study, subjects=subjects)
        return fresh, state_differences(kept, fresh)

    def _unchanged_since(self, study: str, cut: Cut) -> bool:
        """True when the log holds nothing of ``study`` at or after ``cut`` (so the state,
        caught up, is the study at the cut)."""
        assert self.log is not None
        self.state.catch_up()  # type: ignore[union-attr]
        return all(
            e.end <= cut.get(e.topic, 0) or e.topic in ("conflict_change", "access")
            for e in self.log.entries(study=study)
        )

    @property
    def _service_applies(self) -> bool:
        """Kafka: the adjudicator service, not this process, applies the log to the state."""
        return hasattr(self.bus, "await_applied")

    def sync_conflicts(self, study: str | None = None) -> int:
        """Bring the maintained state (and its conflict register) up to date with the log."""
        if self._service_applies:  # Kafka: the adjudicator service records them;
            self.bus.await_applied()  # wait until it has applied what this process sent
            return 0
        return self.state.catch_up() if self.state is not None else 0

    # committee ------------------------------------------------------------------------------
    def find_conflict(
        self, conflict_id: str, study: str | None = None
    ) -> tuple[str, dict[str, Any], Adjudication]:
        """The study holding ``conflict_id``, the conflict and its subject's outcomes, computed
        from the log: the kept conflicts only say where to look, so a vote never signs (and a
        page never shows) what an edited state file says (its evidence fingerprint, the rule's
        outcome)."""
        for candidate in [study] if study else self.studies():
            listed = self.conflicts(candidate)
            match = listed.filter(pl.col("conflict_id") == conflict_id)
            if not match.height:
                continue
            subject = match["subject_id"][0]
            if subject is None or self.state is None:
                result = self.adjudicate(candidate)
            else:
                result, _ = self.checked_outcomes(candidate, [subject])
            found = result.conflicts.filter(pl.col("conflict_id") == conflict_id)
            if found.height:
                return candidate, found.row(0, named=True), result
        where = f"study {study}" if study else "any study"
        raise UnknownConflictError(
            f"no conflict {conflict_id} in {where}; list them with `tract conflicts --all`"
        )

    def votes(self, study: str) -> pl.DataFrame:
        """Every signed committee vote of ``study``, in log order."""
        return self.records("committee_vote", study).collect()

    def ballot(self, conflict_id: str, study: str | None = None) -> tuple[str, Ballot]:
        """Where the committee stands on a conflict: its votes and what is still needed."""
        study, conflict, _ = self.find_conflict(conflict_id, study)
        return study, ballot(self.votes(study), conflict, self.rules.quorum)

    def vote(
        self,
        conflict_id: str,
        *,
        status: str | None,
        rationale: str,
        maps_to: str | None = None,
        study: str | None = None,
        credentials: Credentials | None = None,
        directory: Directory | None = None,
        dry_run: bool = False,
        seen_fingerprint: str | None = None,
        seen_decision: str | None = None,
    ) -> dict[str, Any]:
        """One committee member signs their own vote on a conflict (checked against the
        protocol, the password checked again by ``directory``) and it is recorded; the result
        says whether a decision is now in force and, if not, what is still needed.

        The voter is whoever ``credentials`` authenticate: nobody can vote for someone else.
        ``dry_run`` checks the vote without signing or recording it (a review step).
        ``seen_fingerprint`` / ``seen_decision``: the evidence and decision in force as the
        member reviewed them ("" for none); if either changed since, :class:`StaleReviewError`.
        An identical vote signed again (a double submit) is not recorded twice.
        """
        with self.exclusive():  # the checks and the write see the same log
            study, conflict, result = self.find_conflict(conflict_id, study)
            if seen_fingerprint is not None and (conflict["fingerprint"] or "") != seen_fingerprint:
                raise StaleReviewError(
                    f"conflict {conflict_id}: the evidence changed since you reviewed it; "
                    "review the conflict again before voting"
                )
            if seen_decision is not None and (conflict["decision_id"] or "") != seen_decision:
                raise StaleReviewError(
                    f"conflict {conflict_id}: a decision ({conflict['decision_id']}) came into "
                    "force since you reviewed it; review the conflict again"
                )
            registry = result.tracts.filter(pl.col("subject_id") == conflict["subject_id"])
            rule = registry.filter(pl.col("tract_id") == conflict["tract_id"])
            choice = {
                "study": study,
                "conflict": conflict,
                "status": status or "",
                "rationale": rationale,
                "maps_to": maps_to,
                "registry_tracts": registry["tract_id"].to_list(),
                "rule_outcome": rule["rule_outcome"][0] if rule.height else None,
            }
            unsigned = make_vote(**choice, signature=None)
            if dry_run:
                return unsigned.payload | {"quorum": self.rules.quorum, "study": study}
            if credentials is None or directory is None:
                raise SignatureRefusedError(
                    f"conflict {conflict_id}: a vote must be signed by the member casting it "
                    "(their user name and password)"
                )
            signature = sign(
                self.signers(directory), credentials, VOTE, unsigned.payload["meaning"]
            )
            before = ballot(self.votes(study), conflict, self.rules.quorum)
            again = _same_vote(before, signature, unsigned.payload)
            if again is not None:
                return self._vote_result(study, again, conflict, already_recorded=True)
            previous = before.latest_of(signature.signer)
            event = make_vote(
                **choice,
                signature=signature,
                replaces=previous["vote_id"] if previous else None,
            )
            self.publish([event])
            self.sync_conflicts(study)
            return self._vote_result(study, event.payload, self._refreshed(study, conflict))

    def _refreshed(self, study: str, conflict: dict[str, Any]) -> dict[str, Any]:
        """``conflict`` as it stands once a vote on it is applied. Embedded: the maintained
        state's row, which the vote's catch-up has just recomputed from the log for this subject
        (the caller holds the writer lock, so no file edit came in between), instead of a
        third adjudication of the subject. Kafka: computed from the log again."""
        subject = conflict["subject_id"]
        if self.state is not None and subject is not None and not self._service_applies:
            kept = self.outcomes(study, [subject], tables=("conflicts",)).conflicts
            found = kept.filter(pl.col("conflict_id") == conflict["conflict_id"])
            if found.height:
                return found.row(0, named=True)
        return self.find_conflict(conflict["conflict_id"], study)[1]

    def _vote_result(
        self,
        study: str,
        vote: dict[str, Any],
        conflict: dict[str, Any],
        already_recorded: bool = False,
    ) -> dict[str, Any]:
        """A vote with what it brought about: the decision it completed, or what is needed
        (``conflict``: as it stands after the vote)."""
        votes = self.votes(study).filter(pl.col("conflict_id") == vote["conflict_id"])
        formed = decisions_from_votes(votes, self.rules.quorum).filter(
            pl.col("vote_ids").list.contains(vote["vote_id"])
        )
        decision = formed.row(0, named=True) if formed.height else None
        return dict(vote) | {
            "already_recorded": already_recorded,
            "study": study,
            "decision": None
            if decision is None
            else {k: decision[k] for k in ("decision_id", "status", "maps_to", "members")}
            | {"signatures": decision["signatures"], "decided_at": str(decision["decided_at"])},
            "conflict_status": conflict["status"],
            "needed": ballot(votes, conflict, self.rules.quorum).needed,
        }

    # lock and report ------------------------------------------------------------------------
    def lock_sources(self) -> LockSources:
        """What the lock package reads and writes, from this platform's adapters."""
        return LockSources(
            records=self.source,
            store=self.store,
            publish=self.publish,
            rules=self.rules,
            conflicts=self.conflicts,
            computed=self._computed,
            freeze=self._freeze,
            integrity=self._integrity,
            home=self.home,
            exclusive=self.exclusive,
        )

    def _integrity(self) -> list[str]:
        """The findings of ``tract verify``'s walk of the log (every chain link, every
        segment's bytes): a lock refuses to freeze a log that does not match its chain."""
        from services.log.verify import verify_log

        if self.log is None:
            return []
        return [str(finding) for finding in verify_log(self.log.folder).findings]

    def _freeze(self) -> tuple[Cut, Anchor]:
        self.sync_conflicts()
        if self.log is not None:
            positions, head = self.log.cut()
            return positions, {"seq": head.seq, "hash": head.hash}
        return self.source.positions(), {}

    def lock(
        self,
        study: str,
        lock_id: str,
        reason: str,
        requested_by: str,
        level: str = "soft",
        retention_days: int | None = None,
        *,
        validate: bool = False,
        open_queries_reason: str = "",
        sign: Callable[[str], Signature] | None = None,
    ) -> dict[str, Any]:
        """Lock ``study`` (see :mod:`services.lock.lock`); the same request again returns the
        lock it made. ``open_queries_reason``: why it goes ahead with site queries not closed
        (recorded in the manifest's ``open_queries``). ``sign(meaning)``: the signature of
        ``requested_by``, asked for once the lock's state is checked (`tract lock` and the web
        page; the DAG takes a lock signed beforehand: :meth:`sign_lock_request`)."""
        from services.lock.lock import LockRequest, take_lock

        request = LockRequest(
            study, lock_id, reason, requested_by, level, open_queries_reason=open_queries_reason
        )
        return take_lock(self.lock_sources(), request, retention_days, validate=validate, sign=sign)

    def signers(self, directory: Directory) -> Directory:
        """``directory`` for signing: each account signs only as the log last recorded it
        (an account edited in the user store's file signs nothing: services/accounts.py)."""
        from services.accounts import RecordedDirectory

        if isinstance(directory, RecordedDirectory):
            return directory
        return RecordedDirectory(directory, self.source)  # type: ignore[arg-type]

    def account_problem(self, users: Any, username: str) -> str | None:
        """Why ``username``'s account in the user store ``users`` is not the one the log last
        recorded (changed outside `tract users`), or None (services/accounts.py)."""
        from services.accounts import account_problem

        return account_problem(users, username, self.source)

    def sign_lock_request(
        self,
        study: str,
        lock_id: str,
        reason: str,
        requested_by: str,
        level: str = "soft",
        *,
        open_queries_reason: str = "",
        sign: Callable[[str], Signature],
    ) -> dict[str, Any]:
        """Sign a lock for the database_lock DAG to take (see
        :func:`services.lock.lock.sign_lock_request`): the signed request's payload."""
        from services.lock.lock import LockRequest, sign_lock_request

        request = LockRequest(
            study, lock_id, reason, requested_by, level, open_queries_reason=open_queries_reason
        )
        return sign_lock_request(self.lock_sources(), request, sign)

    def lock_state(self, study: str, lock_id: str) -> str | None:
        """LOCK or UNLOCK (the lock's latest published event), or None if never published."""
        from services.lock.lock import lock_state

        return lock_state(self.lock_sources(), study, lock_id)

    def _applied_sources(self) -> LockSources:
        """The lock sources, publishing through :meth:`record`, so the next read sees it."""
        return replace(self.lock_sources(), publish=self.record)

    def unlock_requests(self, study: str | None = None) -> list[UnlockRequest]:
        """Every unlock request (of ``study``) with its signatures and state."""
        from services.lock.unlock import requests

        return requests(self.lock_sources(), study)

    def request_unlock(
        self,
        study: str,
        lock_id: str,
        reason: str,
        credentials: Credentials,
        directory: Directory,
    ) -> UnlockRequest:
        """A data manager's signed request to undo the lock in force (see
        :mod:`services.lock.unlock`)."""
        from services.lock.unlock import request_unlock

        signer = sign_as(self.signers(directory), credentials, REQUEST_UNLOCK)
        return request_unlock(self._applied_sources(), study, lock_id, reason, signer)

    def approve_unlock(
        self,
        request_id: str,
        credentials: Credentials,
        directory: Directory,
        apply: bool = True,
    ) -> tuple[UnlockRequest, dict[str, Any] | None]:
        """A signed approval; the lock is undone when the approvals are complete (the unlock
        record is then returned), unless ``apply`` is False (the DAG then does it)."""
        from services.lock.unlock import approve_unlock

        signer = sign_as(self.signers(directory), credentials, APPROVE_UNLOCK)
        return approve_unlock(self._applied_sources(), request_id, signer, apply)

    def apply_unlock(self, request_id: str) -> dict[str, Any]:
        """Undo the lock of a request whose approvals are complete (what the DAG runs)."""
        from services.lock.unlock import apply_request

        return apply_request(self._applied_sources(), request_id)

    def raise_lock(
        self,
        study: str,
        lock_id: str,
        reason: str,
        credentials: Credentials,
        directory: Directory,
        retention_days: int | None = None,
    ) -> dict[str, Any]:
        """Raise the soft lock in force to hard, signed (see :func:`services.lock.lock.raise_lock`)."""
        from services.lock.lock import raise_lock

        signer = sign_as(self.signers(directory), credentials, RAISE_LOCK)
        return raise_lock(self._applied_sources(), study, lock_id, reason, signer, retention_days)

    def lock_positions(self, study: str) -> Cut | None:
        """The cut of the study's lock in force, if any."""
        return lock_cut(lock_in_force(self.source, study))

    def lock_event(self, study: str, lock_id: str) -> dict[str, Any] | None:
        """The LOCK event of ``lock_id`` (its receipt: ``manifest_sha256``), if published."""
        from services.lock.lock import published_lock

        return published_lock(self.lock_sources(), study, lock_id)

    def open_lock(self, study: str, lock_id: str) -> Any:
        """A lock's verified snapshot, its manifest checked against the LOCK event in the log."""
        from services.lock.snapshot import open_lock

        event = self.lock_event(study, lock_id)
        return open_lock(self.store, study, lock_id, event["manifest_sha256"] if event else None)

    def report(
        self, study: str, lock_id: str | None = None, result: Adjudication | None = None
    ) -> dict[str, Any]:
        """The report of a lock, or of the current state (from ``result`` when the caller has
        just adjudicated ``study``; built here, as a snapshot's report is, without loading the
        lock modules and pyarrow)."""
        from services.adjudicator.report import PATHOLOGY_COLUMNS, REPORT_TABLES, build_report
        from services.adjudicator.state import current
        from services.state.postlock import changes_since_lock

        if lock_id:
            return self.open_lock(study, lock_id).report(self.rules.confidence_level)
        result = result or self.outcomes(study, tables=REPORT_TABLES, ordered=False)
        reports = schemas.contract("pathology_report")
        pathology = (
            current(self.records("pathology_report", study), reports)
            .select(PATHOLOGY_COLUMNS)
            .collect()
        )
        meta = {"study": result.study, "source": "current", "rule_set": result.rule_set}
        report = build_report(
            result.tracts,
            result.patients,
            result.conflicts,
            pathology,
            level=self.rules.confidence_level,
            meta=meta | {"rule_set_version": result.rule_set_version},
        )
        if "lock_id" in result.tracts.columns:
            report["since_lock"] = changes_since_lock(result)
        return report

    def audit(self, study: str, subject: str | None = None) -> pl.DataFrame:
        """The study's audit trail (``subject``: that subject's rows only, read as such)."""
        from services.audit import audit_trail

        return audit_trail(self.source, study, quorum=self.rules.quorum, subject=subject)

    def subject_ids_for(
        self, study: str, subject: str, kinds: Sequence[str] | None = None
    ) -> list[str]:
        """The subject ids whose records bear on one subject (every spelling of its id, and the
        subjects its records were filed under in other versions), in ``kinds`` (default: all
        its audit trail reads): :func:`services.audit.subjects_of`."""
        from services.audit import subjects_of

        return subjects_of(self.source, study, None, subject, kinds)

    def _baseline(self, study: str, lock: dict[str, Any]) -> LockBaseline | None:
        """The outcomes the lock in force froze (read once from the store, verified against its
        LOCK event, then kept beside the state)."""
        from services.lock.baseline import lock_baseline

        return lock_baseline(self.store, self.home / "state" / "baselines", study, lock)


def _same_vote(
    current: Ballot, signature: Signature, payload: dict[str, Any]
) -> dict[str, Any] | None:
    """The signer's vote that still counts, if it says exactly what ``payload`` says (on the
    same evidence): signing it again adds nothing."""
    for group in current.counting.values():
        for vote in group:
            same = all(
                (vote[k] or None) == (payload[k] or None)
                for k in ("fingerprint", "status", "maps_to", "rationale")
            )
            if vote["voter"] == signature.signer and same:
                return vote
    return None
