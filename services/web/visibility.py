"""What each role may see: one policy, as data, applied to frames before any view sees them.

Blinding works on fields, never on rendered strings. Pages and exports never read the platform
directly: they read a :class:`VisiblePlatform`, whose every frame (records, adjudication
results, the audit trail built from them, the report) is already blinded for the signed-in
role, rejected rows included. Three rules, in order:

1. **Hidden fields** (``HIDDEN``: role -> event kind -> fields): the value is replaced, text by
   ``[withheld]`` (reader fields by ``[blinded reader]``), anything else by null. For the
   committee: what was injected, how much, when and when it was entered (``entered_at`` would
   date the injections), any correction note on an injection, and every reader identity.
2. **Rejected rows** carry their source row as JSON text in ``raw``: it is parsed, the hidden
   fields of its ``source_kind`` withheld and its text scrubbed like any other; a rejection
   whose failing field is hidden has its reason withheld too (it quotes the value); a ``raw``
   that cannot be parsed is withheld whole.
3. **Free text** (change and withdrawal reasons, rejection reasons, conflict details, decision
   rationales, file names, anything typed) is scrubbed of every reader identity known to the
   platform (the ``reader_id`` of every MRI read in every study, accepted or rejected) for
   roles that may not see readers. Matching is case- and separator-insensitive: the text is
   NFKC-normalised, an identity is reduced to its letters and digits (``RAD-A`` -> ``rada``),
   and any run of other characters (none included) may separate them, so ``RAD-A``,
   ``rad_a``, ``Rad A``, ``RADA``, ``r.a.d.-a`` and full-width forms all become
   ``[blinded reader]``; a match must not be glued to a letter or digit on either side
   (``RADAR`` stays). Identifiers the pages join on (record, event, subject, tract, conflict
   ids) and codes keep their value for the pages' logic; a record id is scrubbed where it is
   shown (``_shown_id``, the audit trail's text). A name written some other way (a reader's
   surname) cannot be known here and is not caught.

A role not listed gets the strictest policy. Study-level efficacy figures are shown only to
``SEES_RESULTS`` roles (the committee too with TRACT_WEB_COMMITTEE_SEES_RESULTS=1): a report
keeps only ``REPORT_ALWAYS`` otherwise, so a section added to the report later is hidden from
the committee by default.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import polars as pl

import schemas
from services.adjudicator.report import REPORT_TABLES
from services.audit import audit_trail
from services.events import canonical_json, subject_is
from services.state.maintained import KEPT

if TYPE_CHECKING:
    from fastapi import Request

    from services.adjudicator.engine import Adjudication
    from services.users import Session

WITHHELD = "[withheld]"
BLINDED_READER = "[blinded reader]"
READER_FIELDS = frozenset({"reader_id", "r1_reader", "r2_reader", "adj_reader"})
_COMMITTEE: dict[str, frozenset[str]] = {
    "injection": frozenset({"administered_on", "volume_ml", "entered_at", "change_reason"}),
    "mri_read": frozenset({"reader_id"}),
    # the adjudication's per-tract results name the reads that counted
    "tract_outcome": frozenset({"r1_reader", "r2_reader", "adj_reader"}),
}
HIDDEN: dict[str, dict[str, frozenset[str]]] = {
    "committee": _COMMITTEE,
    "data_manager": {},
    "monitor": {},
    "admin": {},
    # approves unlocks: sees the data as a monitor does, but not the efficacy figures
    "approver": {},
}
STRICTEST = _COMMITTEE
SEES_RESULTS = frozenset({"data_manager", "monitor", "admin"})
# Not efficacy figures: what the report is of, how the core lab's readers agree (kappa,
# adjudication rate: the readers, not the treatment) and the committee's own workload.
REPORT_ALWAYS = ("study", "source", "rule_set", "rule_set_version", "readers", "committee")
# Text that is never scrubbed: identifiers the views join and filter on (hashes and codes).
IDENTIFIERS = frozenset(
    {
        "event_id",
        "event_ids",
        "record_id",
        "read_id",
        "report_id",
        "subject_id",
        "tract_id",
        "conflict_id",
        "decision_id",
        "supersedes",
        "fingerprint",
        "decision_fingerprint",
        "ingest_run",
        "lock_id",
        "access_id",
        "maps_to",
        "manifest_sha256",
        "file_sha256",
        "positions",
        "source_kind",
        "field",
    }
)
_OTHER = r"[^\p{L}\p{N}]"  # neither a letter nor a digit, in any script
RESULT_KINDS = {
    "tracts": "tract_outcome",
    "patients": "patient_outcome",
    "conflicts": "conflict",
    "visits": "visit_status",
    "new_tracts": "new_tract",
}


@dataclass(frozen=True)
class Policy:
    role: str | None
    hidden: Mapping[str, frozenset[str]]
    sees_results: bool

    @property
    def blinds_readers(self) -> bool:
        return "reader_id" in self.hidden.get("mri_read", frozenset())

    def hides(self, kind: str, name: str) -> bool:
        return name in self.hidden.get(kind, frozenset())


def policy_for(role: str | None, committee_sees_results: bool = False) -> Policy:
    """The policy of ``role`` (an unknown role gets the strictest)."""
    hidden = HIDDEN.get(role or "", STRICTEST)
    sees = role in SEES_RESULTS or (role == "committee" and committee_sees_results)
    return Policy(role, hidden, sees)


def normalise(reader_id: str) -> str:
    """A reader identity reduced to what the scrub matches: its letters and digits, lower case."""
    text = pl.select(pl.lit(reader_id, pl.String).str.normalize("NFKC")).item() or ""
    return "".join(c for c in text.casefold() if c.isalnum())


@dataclass(frozen=True)
class Scrubber:
    """Replaces every known reader identity in text (see the module docstring)."""

    reader_ids: frozenset[str]

    @cached_property
    def pattern(self) -> str | None:
        names = sorted(
            {n for n in map(normalise, self.reader_ids) if n}, key=lambda n: (-len(n), n)
        )
        if not names:
            return None
        alternatives = "|".join(f"{_OTHER}*".join(name) for name in names)
        return rf"(?i)(^|{_OTHER})(?:{alternatives})({_OTHER}|$)"

    def expr(self, column: pl.Expr) -> pl.Expr:
        if self.pattern is None:
            return column
        scrubbed = column.str.normalize("NFKC")
        # A match consumes the character after it, which the next one may need before it:
        # a second pass catches identities that follow each other ("RAD-A RAD-B").
        for _ in range(2):
            scrubbed = scrubbed.str.replace_all(self.pattern, f"${{1}}{BLINDED_READER}${{2}}")
        return scrubbed

    def text(self, value: str | None) -> str | None:
        return pl.select(self.expr(pl.lit(value, pl.String))).item()

    def texts(self, values: list[str]) -> list[str]:
        return pl.select(self.expr(pl.Series(values, dtype=pl.String))).to_series().to_list()


def _marker(name: str) -> str:
    return BLINDED_READER if name in READER_FIELDS else WITHHELD


def _codes(kind: str) -> frozenset[str]:
    """Enumerated fields and the record id of an event kind (a result frame has none)."""
    contract = schemas.contracts().get(kind)
    if contract is None:
        return frozenset()
    codes = {f.name for f in contract.fields if f.type == "enum"}
    return frozenset(codes | {contract.id_field} if contract.id_field else codes)


def blind_frame(kind: str, frame: pl.DataFrame, policy: Policy, scrub: Scrubber) -> pl.DataFrame:
    """``frame`` (records of ``kind``, or a result frame) as ``policy`` lets its role see it."""
    hidden = [c for c in frame.columns if policy.hides(kind, c)]
    frame = frame.with_columns(
        (
            pl.lit(_marker(c), pl.String)
            if frame.schema[c] == pl.String
            else pl.lit(None, frame.schema[c])
        ).alias(c)
        for c in hidden
    )
    if kind == "rejected_row" and frame.height and (policy.hidden or policy.blinds_readers):
        frame = _blind_rejected(frame, policy, scrub)
    if not policy.blinds_readers:
        return frame
    contract = schemas.contracts().get(kind)
    if contract is not None and contract.id_field in frame.columns:
        frame = frame.with_columns(_shown_id=scrub.expr(pl.col(contract.id_field)))
    keep = IDENTIFIERS | _codes(kind) | set(hidden) | {"_shown_id"}
    texts = [
        c
        for c, dtype in frame.schema.items()
        if c not in keep and not c.endswith(("_event_id", "_event_ids"))
        if dtype == pl.String or dtype == pl.List(pl.String)
    ]
    return frame.with_columns(
        (
            scrub.expr(pl.col(c))
            if frame.schema[c] == pl.String
            else pl.col(c).list.eval(scrub.expr(pl.element()))
        )
        for c in texts
    )


def _blind_rejected(frame: pl.DataFrame, policy: Policy, scrub: Scrubber) -> pl.DataFrame:
    """Rejected rows: the source row in ``raw`` filtered by the same field rules, and the reason
    withheld when the failing field is hidden (it quotes the value). Dead letters are few, so
    the JSON is handled row by row; the text is scrubbed in one Polars pass."""
    rows: list[dict[str, Any] | None] = []
    cells: list[tuple[int, str, str]] = []
    reasons: list[bool] = []
    for number, (raw, kind, failing) in enumerate(
        frame.select("raw", "source_kind", "field").iter_rows()
    ):
        reasons.append(policy.hides(kind, failing))
        try:
            row = json.loads(raw)
        except (TypeError, ValueError):
            row = None
        if not isinstance(row, dict):
            rows.append(None)
            continue
        for name, value in row.items():
            if policy.hides(kind, name):
                row[name] = _marker(name)
            elif isinstance(value, str) and policy.blinds_readers:
                cells.append((number, name, value))
        rows.append(row)
    for (number, name, _), value in zip(cells, scrub.texts([v for *_, v in cells]), strict=True):
        rows[number][name] = value  # type: ignore[index]
    return frame.with_columns(
        raw=pl.Series(
            [WITHHELD if r is None else canonical_json(r) for r in rows], dtype=pl.String
        ),
        reason=pl.when(pl.Series(reasons, dtype=pl.Boolean))
        .then(pl.lit(WITHHELD))
        .otherwise(pl.col("reason")),
    )


class VisiblePlatform:
    """The platform as one role may see it: read-only, every frame already blinded.

    It offers what pages and exports read (``records``, ``adjudicate``, ``find_conflict``,
    ``report``, ``audit``, ``studies``, ``rules``) and nothing that writes. ``records`` has the
    platform's signature, so the audit trail is built from blinded records by the same
    ``audit_trail`` the CLI uses, whatever log or platform sits behind it.
    """

    def __init__(self, platform: Any, policy: Policy) -> None:
        self._platform = platform
        self.policy = policy
        self._results: dict[str, Adjudication] = {}
        self._blinded: dict[tuple[str, str], pl.DataFrame] = {}
        self._partial: dict[str, Adjudication] = {}  # the report's tables, read once

    @property
    def rules(self) -> Any:
        return self._platform.rules

    def studies(self) -> list[str]:
        return self._platform.studies()

    @cached_property
    def scrubber(self) -> Scrubber:
        """Every reader identity the platform knows, in every study, accepted or rejected."""
        if not self.policy.blinds_readers:
            return Scrubber(frozenset())
        ids: set[str] = set()
        for study in self.studies():
            ids |= set(self._platform.records("mri_read", study).collect()["reader_id"])
            rejected = self._platform.records("rejected_row", study).collect()
            ids |= set(
                rejected.filter(pl.col("source_kind") == "mri_read")["raw"]
                .str.json_path_match("$.reader_id")
                .drop_nulls()
            )
        return Scrubber(frozenset(i for i in ids if i))

    def blind(self, kind: str, frame: pl.DataFrame) -> pl.DataFrame:
        return blind_frame(kind, frame, self.policy, self.scrubber)

    def records(
        self,
        kind: str,
        study: str,
        upto: dict[str, int] | int | None = None,
        subjects: Collection[str] | None = None,
        *,
        subject: str | None = None,
    ) -> pl.LazyFrame:
        """The platform's records, blinded (``subject``: only that subject's, blinded first
        thing so a page about one subject does not scrub the whole study). ``upto`` is a cut,
        or one kind's offset (the :class:`~services.state.Records` protocol the audit trail
        reads through)."""
        cut = {kind: upto} if isinstance(upto, int) else upto
        if subject is not None:
            subjects = [subject] if subjects is None else [s for s in subjects if s == subject]
        frame = self._platform.records(kind, study, cut, subjects)
        return self.blind(kind, frame.collect()).lazy()

    def subject_records(
        self, study: str, subject: str, kinds: Sequence[str]
    ) -> dict[str, pl.DataFrame]:
        """One subject's records of each of ``kinds``, read side by side, then blinded."""
        plans = [self._platform.records(kind, study, None, [subject]) for kind in kinds]
        frames = pl.collect_all(plans)
        return {kind: self.blind(kind, frame) for kind, frame in zip(kinds, frames, strict=True)}

    def _raw_result(self, study: str) -> Adjudication:
        if study not in self._results:
            self._results[study] = self._platform.outcomes(study, tables=KEPT)
        return self._results[study]

    def _blind_result(self, result: Adjudication) -> Adjudication:
        return replace(
            result,
            **{
                name: self.blind(kind, getattr(result, name)) for name, kind in RESULT_KINDS.items()
            },
        )

    def table(self, study: str, name: str, subjects: Collection[str] | None = None) -> pl.DataFrame:
        """One table of the study's outcomes (of ``subjects`` only, when given), blinded once
        per page: a page that needs the conflicts does not scrub a 100,000-subject study's
        visits, nor a dashboard all of them for the lanes of its first patients."""
        key, kind = (study, name), RESULT_KINDS[name]
        if key in self._blinded:
            return _of(self._blinded[key], subjects)
        if subjects is not None:  # a few subjects' rows: blinded, not kept for the page
            return self.blind(kind, self._raw_table(study, name, subjects))
        self._blinded[key] = self.blind(kind, self._raw_table(study, name))
        return self._blinded[key]

    def _raw_table(
        self, study: str, name: str, subjects: Collection[str] | None = None
    ) -> pl.DataFrame:
        """From the page's read of the study when there is one, else that table alone."""
        read = self._results.get(study)
        if read is None and name in REPORT_TABLES:
            read = self._partial.get(study)
        if read is not None and name in KEPT:
            return _of(getattr(read, name), subjects)
        return getattr(self._platform.outcomes(study, subjects, tables=(name,)), name)

    def adjudicate(self, study: str, tables: Collection[str] = tuple(RESULT_KINDS)) -> Adjudication:
        """The study's outcomes, blinded: ``tables`` only (the others empty), since the visits
        are not kept but computed from the log, a whole study's adjudication."""
        return replace(
            self._raw_result(study), **{name: self.table(study, name) for name in tables}
        )

    def conflicts(self, study: str) -> pl.DataFrame:
        """The study's conflicts (every status), blinded."""
        return self.table(study, "conflicts")

    def subject_outcomes(self, study: str, subject: str) -> tuple[Adjudication, tuple[str, ...]]:
        """One subject's outcomes as the log gives them, blinded, and the tables whose kept
        files differ from them (named, never their values: a role may not see outcomes)."""
        result, differ = self._platform.checked_outcomes(study, [subject])
        return self._blind_result(result), tuple(table for table, _ in differ)

    def find_conflict(
        self, conflict_id: str, study: str | None = None
    ) -> tuple[str, dict[str, Any], Adjudication]:
        found, _, result = self._platform.find_conflict(conflict_id, study)
        visible = self._blind_result(result)  # its subject's outcomes: not kept as the study's
        row = visible.conflicts.filter(pl.col("conflict_id") == conflict_id).row(0, named=True)
        return found, row, visible

    def report(self, study: str) -> dict[str, Any]:
        """The study's current report; without ``sees_results`` only ``REPORT_ALWAYS``."""
        result = self._results.get(study) or self._partial.get(study)
        if result is None:  # the tables the report reads, not the visits: kept for the page
            result = self._partial[study] = self._platform.outcomes(study, tables=REPORT_TABLES)
        report = self._platform.report(study, result=result)
        if self.policy.sees_results:
            return report
        return {k: report[k] for k in REPORT_ALWAYS if k in report}

    def queries(self, study: str, subject: str | None = None) -> pl.DataFrame:
        """The study's site queries, derived from blinded records (``services/queries.py``):
        a rejected row's source row and reason are as the role may see them. ``subject``: that
        subject's queries only (its id in any case), derived from the records that bear on it
        alone (a subject's page does not derive the study's)."""
        from services.queries import QUERY_KINDS, filter_queries, site_queries

        conflicts, wanted = self.conflicts(study), None
        if subject is not None:  # its spellings: in the conflicts, and the kinds queries read
            conflicts = conflicts.filter(subject_is(subject))
            spelled = self._platform.subject_ids_for(study, subject, QUERY_KINDS)
            wanted = sorted({*spelled, *conflicts["subject_id"].to_list()})

        def read(kind: str, subjects: Collection[str] | None = None) -> pl.DataFrame:
            if subjects is None and kind != "ingest_run":  # a run is no subject's
                subjects = wanted
            return self.records(kind, study, subjects=subjects).collect()

        found = site_queries(read, conflicts)
        return found if subject is None else filter_queries(found, subject=subject)

    @property
    def sees_everything(self) -> bool:
        """Whether the role sees every field and the results: only such a role may take a
        lock's files away (they hold every event, unblinded)."""
        return not any(self.policy.hidden.values()) and self.policy.sees_results

    def lock_manifest(self, study: str, lock_id: str) -> dict[str, Any]:
        """A published lock's manifest, checked against its LOCK event (raises when damaged);
        without ``sees_results`` the report-like parts stay out (the changes since the
        previous lock count changed outcomes and categories)."""
        from services.lock.snapshot import read_manifest

        event = self._platform.lock_event(study, lock_id)
        manifest = read_manifest(
            self._platform.store, study, lock_id, event["manifest_sha256"] if event else None
        )
        if not self.policy.sees_results:
            manifest = {k: v for k, v in manifest.items() if k != "changes_since_previous_lock"}
        return manifest

    def locked_tables(self, study: str, lock_id: str) -> dict[str, pl.DataFrame]:
        """A lock's outcome tables (verified), for a role that sees results only."""
        if not self.policy.sees_results:
            raise PermissionError("the locked outcomes are results; this role does not see them")
        snapshot = self._platform.open_lock(study, lock_id)
        return {k: snapshot.tables[k] for k in ("tract_outcomes", "patient_outcomes")}

    def locked_report(self, study: str, lock_id: str) -> dict[str, Any]:
        """The report frozen with a lock (every file verified), as the role may see it."""
        report = self._platform.report(study, lock_id)
        if self.policy.sees_results:
            return report
        return {k: report[k] for k in REPORT_ALWAYS if k in report}

    def audit(self, study: str, subject: str | None = None) -> pl.DataFrame:
        """The audit trail built from blinded records; its text (which quotes record ids, kept
        intact in the records for their logic) is scrubbed too. ``subject``: that subject's
        rows only, whose records alone are read and blinded (the subject is looked up in the
        log's subject and record ids, which no role has withheld and nothing here shows)."""
        wanted = None if subject is None else self._platform.subject_ids_for(study, subject)
        trail = audit_trail(self, study, subject=subject, subjects=wanted)  # type: ignore[arg-type]
        if not self.policy.blinds_readers:
            return trail
        texts = [c for c, t in trail.schema.items() if t == pl.String and c != "event_id"]
        return trail.with_columns(self.scrubber.expr(pl.col(c)) for c in texts)


def _of(frame: pl.DataFrame, subjects: Collection[str] | None) -> pl.DataFrame:
    return frame if subjects is None else frame.filter(pl.col("subject_id").is_in(list(subjects)))


def visible(request: Request, session: Session) -> VisiblePlatform:
    """The platform as the signed-in person's role may see it (every page reads through this)."""
    from services.web.deps import web

    state = web(request)
    return VisiblePlatform(
        state.platform, policy_for(session.role, state.settings.committee_sees_results)
    )
