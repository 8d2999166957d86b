"""Site queries: what a clinical site, the imaging core lab or the pathology lab must answer.

Queries are derived from the data on read, never typed in, so none can be forgotten:

- every **rejected row** (a dead letter) is a query to the party that sent the file; it is
  *answered by a corrected row* when an accepted version of the same record id arrives (a
  higher version, or the same version when the row was not refused for its identity);
- every **conflict the site or a lab must answer** (``SITE_FACING``: the registry, visit order,
  missing or disagreeing exams, reads that are not independent ...) is a query; it is answered
  when the data resolve the conflict (or the committee decides it).

What people do with a query is recorded as ``site_query`` events (``schemas/events``): the
site's note (ANSWERED), the data manager's review (CLOSED) or a query sent back (REOPENED). A
query's status is its derived answer folded with those events: OPEN (waiting for the site),
ANSWERED (waiting for the data manager), CLOSED. A reopened query is answered again only by
a *different* automatic answer than the one the data manager saw (``answer_seen``).

Pure functions over frames: ``read(kind)`` gives a kind's records (every version, contract
columns with ``offset`` and ``event_id``), so the web page reads them blinded, the CLI from the
platform and the lock at its cut.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Collection
from typing import Any

import polars as pl

import schemas
from services.adjudicator.state import current
from services.errors import TractError
from services.events import Event, digest, make_event, subject_is, utc_now

Read = Callable[..., pl.DataFrame]
"""``read(kind, subjects=None)``: the study's records of ``kind`` (of ``subjects`` only)."""
QUERY_KINDS = ("rejected_row", "conflict_change", "site_query", "subject")
"""The kinds whose records name the subjects of a study's queries (with its conflicts)."""

OPEN, ANSWERED, CLOSED, REOPENED = "OPEN", "ANSWERED", "CLOSED", "REOPENED"
STATUSES = (OPEN, ANSWERED, CLOSED)
ACTIONS = (ANSWERED, CLOSED, REOPENED)
SITE, CORE_LAB, PATHOLOGY_LAB = "site", "imaging core lab", "pathology lab"
PARTY = {
    "subject": SITE,
    "tract": SITE,
    "injection": SITE,
    "clinical_exam": SITE,
    "mri_read": CORE_LAB,
    "pathology_report": PATHOLOGY_LAB,
}
WHEN = {"mri_read": "read_at", "pathology_report": "reported_at"}
SITE_FACING = (
    "UNMATCHED_TRACT",
    "INCONSISTENT_EXAM",
    "MISSING_ASSESSMENT",
    "VISIT_ORDER",
    "READER_NOT_INDEPENDENT",
    "DUPLICATE_REGISTRATION",
    "UNKNOWN_SUBJECT",
)
"""Conflict types whose cause is in the data a site or lab sends (the others, e.g. readers who
disagree or clinical and MRI findings that differ, are the committee's judgement alone)."""
NOTE_LIMIT = 2000

QUERY_SCHEMA = pl.Schema(
    {
        "query_id": pl.String(),
        "source": pl.String(),
        "source_id": pl.String(),
        "site_id": pl.String(),
        "subject_id": pl.String(),
        "tract_id": pl.String(),
        "addressed_to": pl.String(),
        "topic": pl.String(),
        "question": pl.String(),
        "record": pl.String(),
        "file": pl.String(),
        "line": pl.Int64(),
        "field": pl.String(),
        "raw": pl.String(),
        "raised_at": pl.Datetime("us", "UTC"),
        "auto_answer": pl.String(),
        "auto_answered_at": pl.Datetime("us", "UTC"),
    }
)
CSV_COLUMNS = (
    "site_id",
    "subject_id",
    "tract_id",
    "query_id",
    "addressed_to",
    "status",
    "raised_at",
    "question",
    "file",
    "line",
    "field",
    "record",
    "answer",
    "raw",
)


class QueryRefusedError(TractError):
    """An action the query's state does not allow (or a note missing); the message says why."""


class UnknownQueryError(QueryRefusedError):
    """No query with that id in the study."""


def query_id(source: str, source_id: pl.Expr | str) -> Any:
    """``Q-`` and twelve hex digits of (source, source id): the same query always."""
    if isinstance(source_id, str):
        return f"Q-{digest(source, source_id, length=12)}"
    from services.events import digest_expr

    return pl.lit("Q-") + digest_expr(pl.lit(source), source_id, length=12)


# -- derivation ----------------------------------------------------------------------------------
def _json(field: str) -> pl.Expr:
    return pl.col("raw").str.json_path_match(f"$.{field}")


def _rejected(read: Read) -> pl.DataFrame:
    """One query per dead letter, with its record id and version parsed from the source row."""
    rejected = read("rejected_row")
    if rejected.is_empty():
        return pl.DataFrame(schema=QUERY_SCHEMA)
    runs = read("ingest_run").select("ingest_run", raised_at="finished_at")
    contracts = {k: schemas.contract(k) for k in rejected["source_kind"].unique().to_list()}
    known = {k: c for k, c in contracts.items() if c.id_field}

    def by_kind(pick: Callable[[schemas.Contract], str | None]) -> pl.Expr:
        return pl.coalesce(
            [
                pl.when(pl.col("source_kind") == k).then(_json(name))
                for k, c in known.items()
                if (name := pick(c))
            ]
            or [pl.lit(None, pl.String)]
        )

    frame = (
        rejected.join(runs, on="ingest_run", how="left")
        .with_columns(
            _record=by_kind(lambda c: c.id_field),
            _version=by_kind(lambda c: c.version_field).cast(pl.Int64, strict=False),
            subject_id=_json("subject_id").fill_null(""),
            tract_id=_json("tract_id"),
        )
        .with_columns(
            record=pl.when(pl.col("_record").is_not_null()).then(
                pl.format("{} {} v{}", "source_kind", "_record", "_version")
            ),
        )
    )
    answers = _corrections(frame, read, known)
    return frame.join(answers, on="event_id", how="left").select(
        query_id=query_id("rejected_row", pl.col("event_id")),
        source=pl.lit("rejected_row"),
        source_id="event_id",
        site_id=pl.lit(None, pl.String),
        subject_id="subject_id",
        tract_id="tract_id",
        addressed_to=pl.col("source_kind").replace_strict(PARTY, default=SITE),
        topic=pl.format("{} line {}", "file", "line"),
        question=pl.format("Row refused: {}. Send a corrected row.", "reason"),
        record="record",
        file="file",
        line="line",
        field="field",
        raw="raw",
        raised_at="raised_at",
        auto_answer="auto_answer",
        auto_answered_at="auto_answered_at",
    )


def _corrections(frame: pl.DataFrame, read: Read, contracts: dict[str, Any]) -> pl.DataFrame:
    """Per dead letter, the accepted version that answers it: the lowest higher version of the
    same record id, or the same version when the row was refused for a field other than its
    version (a conflicting duplicate needs a new version)."""
    parts = []
    for kind, contract in contracts.items():
        mine = frame.filter((pl.col("source_kind") == kind) & pl.col("_record").is_not_null())
        if mine.is_empty():
            continue
        subjects = [s for s in mine["subject_id"].unique().to_list() if s]
        accepted = read(kind, subjects=subjects or None).select(
            _record=pl.col(contract.id_field),
            _accepted=pl.col(contract.version_field),
            auto_answered_at=pl.col(WHEN.get(kind, "entered_at")),
        )
        found = (
            mine.select("event_id", "source_kind", "_record", "_version", "field")
            .join(accepted, on="_record")
            .filter(
                (pl.col("_accepted") > pl.col("_version"))
                | (
                    (pl.col("_accepted") == pl.col("_version"))
                    & (pl.col("field") != contract.version_field)
                )
            )
            .sort("_accepted", descending=True)
            .group_by("event_id")
            .first()
        )
        parts.append(
            found.select(
                "event_id",
                auto_answer=pl.format(
                    "corrected row accepted: {} {} v{}", "source_kind", "_record", "_accepted"
                ),
                auto_answered_at="auto_answered_at",
            )
        )
    if not parts:
        return pl.DataFrame(
            schema={
                "event_id": pl.String(),
                "auto_answer": pl.String(),
                "auto_answered_at": pl.Datetime("us", "UTC"),
            }
        )
    return pl.concat(parts)


QUESTIONS = {
    "UNMATCHED_TRACT": "Evidence of {s} names tract {t}, which is not in the subject's "
    "registry: correct the tract id on the evidence, or register the tract.",
    "INCONSISTENT_EXAM": "Two current exam records of {s}/{t} disagree ({d}): correct one or "
    "retire it (deleted = Y, with a reason).",
    "MISSING_ASSESSMENT": "{s}/{t}: {d}. Send the missing record, or confirm it was not done.",
    "VISIT_ORDER": "{s}/{t}: {d}.",
    "READER_NOT_INDEPENDENT": "The final MRI reads of {s}/{t} are not independent (one reader "
    "in two roles): re-read with an independent reader.",
    "DUPLICATE_REGISTRATION": "{s} {t} has two current registry records: retire one "
    "(deleted = Y, with a reason).",
    "UNKNOWN_SUBJECT": "Evidence arrived for subject {s}, who has no subject record: send the "
    "subject's registry row, or correct the subject id on the evidence.",
}


_PLACES = {"{s}": "subject_id", "{t}": "tract_id", "{d}": "detail"}


def _fill(template: str) -> pl.Expr:
    """``template`` with {s}, {t}, {d} filled from the subject, tract and detail columns."""
    parts: list[pl.Expr] = []
    rest = template
    while rest:
        at = (
            min((rest.find(p), p) for p in _PLACES if p in rest)
            if any(p in rest for p in _PLACES)
            else (len(rest), "")
        )
        if at[0]:
            parts.append(pl.lit(rest[: at[0]]))
        if at[1]:
            value = pl.col(_PLACES[at[1]]).fill_null("")
            if at[1] == "{d}":  # the engine's note says "missing: missing: FU5"
                value = value.str.replace_all("missing: missing: ", "missing: ", literal=True)
            parts.append(value)
        rest = rest[at[0] + len(at[1]) :]
    return pl.concat_str(parts)


def _conflicts(conflicts: pl.DataFrame, read: Read) -> pl.DataFrame:
    """One query per conflict of a ``SITE_FACING`` type; answered when it no longer holds
    (the data resolved it) or the committee decided it."""
    facing = conflicts.filter(pl.col("type").is_in(SITE_FACING))
    if facing.is_empty():
        return pl.DataFrame(schema=QUERY_SCHEMA)
    cleared = (
        read("conflict_change")
        .filter(pl.col("condition") == "CLEARED")
        .group_by("conflict_id")
        .agg(cleared_at=pl.col("at").max())
    )
    question = pl.coalesce(
        [pl.when(pl.col("type") == t).then(_fill(text)) for t, text in QUESTIONS.items()]
    )
    to_lab = (pl.col("type") == "READER_NOT_INDEPENDENT") | (
        (pl.col("type") == "MISSING_ASSESSMENT") & (pl.col("about") == "mri")
    )
    return facing.join(cleared, on="conflict_id", how="left").select(
        query_id=query_id("conflict", pl.col("conflict_id")),
        source=pl.lit("conflict"),
        source_id="conflict_id",
        site_id=pl.lit(None, pl.String),
        subject_id="subject_id",
        tract_id=pl.col("tract_id").replace("", None),
        addressed_to=pl.when(to_lab).then(pl.lit(CORE_LAB)).otherwise(pl.lit(SITE)),
        topic=pl.col("type"),
        question=question,
        record=pl.format("conflict {}", "conflict_id"),
        file=pl.lit(None, pl.String),
        line=pl.lit(None, pl.Int64),
        field=pl.lit(None, pl.String),
        raw=pl.lit(None, pl.String),
        raised_at="first_raised_at",
        auto_answer=pl.when(pl.col("status") == "RESOLVED")
        .then(pl.lit("the data resolved the conflict"))
        .when(pl.col("status") == "DECIDED")
        .then(pl.format("the committee decided it ({}, {})", "decision_status", "decision_id")),
        auto_answered_at=pl.when(pl.col("status") == "RESOLVED")
        .then(pl.col("cleared_at"))
        .when(pl.col("status") == "DECIDED")
        .then(pl.col("decided_at")),
    )


def _sites(read: Read) -> pl.DataFrame:
    subjects = read("subject")
    if subjects.is_empty():
        return pl.DataFrame(schema={"subject_id": pl.String(), "_site": pl.String()})
    live = current(subjects.lazy(), schemas.contract("subject")).collect()
    return live.group_by("subject_id").agg(_site=pl.col("site_id").sort().first())


def _fold(queries: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """The derived answers folded with what people recorded: the status, the answer shown, who
    answered and who closed."""
    events = events.sort("at", "offset")
    last = events.group_by("query_id").agg(
        _action=pl.col("action").last(),
        _note=pl.col("note").last(),
        _by=pl.col("by").last(),
        _at=pl.col("at").last(),
        _seen=pl.col("answer_seen").last(),
        events=pl.len(),
    )
    notes = (
        events.filter(pl.col("action") == ANSWERED)
        .group_by("query_id")
        .agg(
            _site_note=pl.col("note").last(),
            _noted_by=pl.col("by").last(),
            _noted_at=pl.col("at").last(),
        )
    )
    action = pl.col("_action")
    auto = pl.col("auto_answer")
    answered_again = auto.is_not_null() & (auto != pl.col("_seen").fill_null(""))
    status = (
        pl.when(action == CLOSED)
        .then(pl.lit(CLOSED))
        .when(action == ANSWERED)
        .then(pl.lit(ANSWERED))
        .when(action == REOPENED)
        .then(pl.when(answered_again).then(pl.lit(ANSWERED)).otherwise(pl.lit(OPEN)))
        .when(auto.is_not_null())
        .then(pl.lit(ANSWERED))
        .otherwise(pl.lit(OPEN))
    )
    site_answer = pl.format("site's note (recorded by {}): {}", "_noted_by", "_site_note")
    return (
        queries.join(last, on="query_id", how="left")
        .join(notes, on="query_id", how="left")
        .with_columns(status=status, events=pl.col("events").fill_null(0).cast(pl.Int64))
        .with_columns(
            answer=pl.when(action == ANSWERED)
            .then(site_answer)
            .when((action == REOPENED) & ~answered_again)
            .then(pl.lit(None, pl.String))
            .otherwise(
                pl.coalesce(auto, pl.when(pl.col("_site_note").is_not_null()).then(site_answer))
            ),
            answered_at=pl.when(action == ANSWERED)
            .then(pl.col("_noted_at"))
            .otherwise(pl.coalesce("auto_answered_at", "_noted_at")),
            closed_by=pl.when(action == CLOSED).then(pl.col("_by")),
            closed_at=pl.when(action == CLOSED).then(pl.col("_at")),
            last_note=pl.when(action.is_in([CLOSED, REOPENED])).then(pl.col("_note")),
            last_action=action,
        )
        .drop("_action", "_note", "_by", "_at", "_seen", "_site_note", "_noted_by", "_noted_at")
    )


def site_queries(read: Read, conflicts: pl.DataFrame) -> pl.DataFrame:
    """Every query of a study with its status, by site, subject and time raised.

    ``conflicts``: the study's conflicts (the adjudication's frame, any status)."""
    derived = pl.concat(
        [_rejected(read).cast(QUERY_SCHEMA), _conflicts(conflicts, read).cast(QUERY_SCHEMA)]
    )
    with_sites = (
        derived.join(_sites(read), on="subject_id", how="left")
        .with_columns(site_id=pl.col("_site"))
        .drop("_site")
    )
    folded = _fold(with_sites, read("site_query"))
    return folded.sort("site_id", "subject_id", "raised_at", "query_id", nulls_last=True)


def not_closed(queries: pl.DataFrame) -> pl.DataFrame:
    return queries.filter(pl.col("status") != CLOSED)


def summary(queries: pl.DataFrame, reason: str | None = None) -> dict[str, Any]:
    """What a lock records about the queries still open at its cut (and why it went ahead)."""
    pending = not_closed(queries)
    by_site = (
        pending.group_by(pl.col("site_id").fill_null("unknown site"))
        .len()
        .sort("site_id")
        .iter_rows()
    )
    return {
        "not_closed": pending.height,
        "open": pending.filter(pl.col("status") == OPEN).height,
        "answered": pending.filter(pl.col("status") == ANSWERED).height,
        "closed": queries.height - pending.height,
        "by_site": dict(by_site),
        "query_ids": pending["query_id"].to_list(),
        "reason": (reason or "").strip() or None,
    }


def fingerprint(queries: pl.DataFrame) -> str:
    """The open queries as one digest: a confirmation page refuses if they changed meanwhile."""
    pending = not_closed(queries).sort("query_id")
    return digest(*(f"{q}:{s}" for q, s in pending.select("query_id", "status").iter_rows()), "")


# -- what people do --------------------------------------------------------------------------------
def check_action(query: dict[str, Any], action: str, note: str) -> str:
    """The note to record for ``action`` on ``query``, or :class:`QueryRefusedError` saying
    what to do instead."""
    note = (note or "").strip()
    status = query["status"]
    if action not in ACTIONS:
        raise QueryRefusedError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    if len(note) > NOTE_LIMIT:
        raise QueryRefusedError(f"the note is {len(note)} characters; keep it under {NOTE_LIMIT}")
    if action == ANSWERED:
        if status == CLOSED:
            raise QueryRefusedError("this query is closed; reopen it before recording an answer")
        if not note:
            raise QueryRefusedError("write the site's answer in the note")
    elif action == CLOSED:
        if status == CLOSED:
            raise QueryRefusedError("this query is already closed")
        if status == OPEN and not note:
            raise QueryRefusedError(
                "this query has no answer yet: say in the note why you close it unanswered"
            )
        note = note or "answer reviewed and accepted"
    elif action == REOPENED:
        if status == OPEN:
            raise QueryRefusedError("this query is already open")
        if not note:
            raise QueryRefusedError("say in the note what the site must still do")
    return note


def find(queries: pl.DataFrame, query_id: str, study: str) -> dict[str, Any]:
    """The query ``query_id`` of the frame, or :class:`UnknownQueryError`."""
    match = queries.filter(pl.col("query_id") == query_id.strip())
    if match.is_empty():
        raise UnknownQueryError(
            f"no query {query_id} in study {study}; list them with `tract queries list --study {study}`"
        )
    return match.row(0, named=True)


def query_event(study: str, query: dict[str, Any], action: str, note: str, by: str) -> Event:
    """The ``site_query`` event recording ``action`` by ``by`` (checked with check_action)."""
    payload = {
        "query_id": query["query_id"],
        "action": action,
        "source": query["source"],
        "source_id": query["source_id"],
        "subject_id": query["subject_id"] or "",
        "tract_id": query["tract_id"],
        "note": note,
        "answer_seen": query.get("auto_answer"),
        "by": by,
        "at": utc_now(),
    }
    return make_event("site_query", study, payload["subject_id"], payload)


# -- exports ---------------------------------------------------------------------------------------
def _defuse(value: str | None) -> str | None:
    """A cell a spreadsheet would run as a formula gets a leading quote (OWASP CSV injection)."""
    return "'" + value if value and value[0] in "=+-@\t\r" else value


def queries_csv(queries: pl.DataFrame) -> str:
    """The queries as CSV for the sites: one row each, safe to open in a spreadsheet."""
    rows = queries.select(CSV_COLUMNS).with_columns(
        pl.col("raised_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    rows = rows.with_columns(
        pl.col(c).map_elements(_defuse, return_dtype=pl.String)
        for c, t in rows.schema.items()
        if t == pl.String
    )
    buffer = io.StringIO()
    rows.write_csv(buffer)
    return buffer.getvalue()


def filter_queries(
    queries: pl.DataFrame,
    *,
    site: str | None = None,
    subject: str | None = None,
    status: str | None = None,
    subjects: Collection[str] | None = None,
) -> pl.DataFrame:
    """The queries of one site, subject or status (``status`` NOT_CLOSED: open or answered)."""
    rows = queries
    if site:
        rows = rows.filter(pl.col("site_id").fill_null("") == site)
    if subject:
        rows = rows.filter(subject_is(subject))
    if subjects is not None:
        rows = rows.filter(pl.col("subject_id").is_in(list(subjects)))
    if status == "NOT_CLOSED":
        rows = not_closed(rows)
    elif status:
        rows = rows.filter(pl.col("status") == status)
    return rows


def query_audit(events: pl.DataFrame) -> pl.DataFrame:
    """The audit trail's rows for ``site_query`` events (who answered, closed or reopened which
    query, and why): the columns of ``services.audit.AUDIT_SCHEMA``."""
    return events.select(
        at=pl.col("at").dt.to_string("%Y-%m-%dT%H:%M:%SZ"),
        kind=pl.lit("site_query"),
        action="action",
        who="by",
        subject_id="subject_id",
        tract_id="tract_id",
        what=pl.format("query {} ({} {})", "query_id", "source", "source_id"),
        why="note",
        old_value="answer_seen",
        new_value="action",
        event_id="event_id",
        offset="offset",
    )
