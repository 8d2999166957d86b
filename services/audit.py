"""The audit trail: who, when, what, why, old and new value, for every change in a study.

It is a view over the log, which is append-only: corrections, deletions, late versions,
dead letters, committee votes with their signatures and the decisions they brought into force
(and what those superseded), conflicts raised and cleared, unlock requests and approvals, and
locks. Nothing is ever overwritten, so the trail cannot disagree with the data.

A signed row's ``who`` is its signature's printed name and user name; its ``new_value`` the
signature's meaning. A decision derived from votes has no event of its own: its row carries the
decision id where other rows carry an event id.

Access records (who did or was refused what, from where) are written here too
(:func:`access_event`): the web page records its sign-ins and refusals with it, and the CLI the
signatures it refuses at a terminal and its user changes. Every text field is bounded.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

import polars as pl

import schemas
from services.adjudicator.state import EVIDENCE_KINDS
from services.adjudicator.votes import decisions_from_votes
from services.assignments import assignment_audit
from services.events import Event, canonical_json, make_event, subject_is, utc_now
from services.queries import query_audit
from services.state.records import Cut, Records, records_at

AUDIT_SCHEMA = pl.Schema(
    {
        "at": pl.String(),
        "kind": pl.String(),
        "action": pl.String(),
        "who": pl.String(),
        "subject_id": pl.String(),
        "tract_id": pl.String(),
        "what": pl.String(),
        "why": pl.String(),
        "old_value": pl.String(),
        "new_value": pl.String(),
        "event_id": pl.String(),
        "offset": pl.Int64(),
    }
)
WHO = {"mri_read": "reader_id", "pathology_report": "pathologist_id"}
_DECISION_COLUMNS = (
    "decided_at",
    "supersedes",
    "subject_id",
    "tract_id",
    "conflict_type",
    "conflict_id",
    "decision_id",
    "rationale",
    "rule_outcome",
    "status",
    "maps_to",
)
# Access events not tied to one study (sign-ins, user changes) are filed under this study id
# and shown in every study's trail.
PLATFORM_WIDE = "*"
WHEN = {"mri_read": "read_at", "pathology_report": "reported_at"}
_TRAIL_KINDS = (
    "committee_vote",
    "committee_decision",
    "conflict_change",
    "rejected_row",
    "ingest_run",
    "unlock_request",
    "lock_request",
    "lock",
    "site_query",
    "assignment",
    "access",
)
"""What the trail reads of a study besides the evidence."""
_PLATFORM_KINDS = ("account", "access")
"""What it reads of the platform (:data:`PLATFORM_WIDE`)."""
_SKIP = {
    "offset",
    "event_id",
    "entered_at",
    "read_at",
    "reported_at",
    "change_reason",
    "deleted",
    "record_version",
    "read_version",
    "report_version",
}


def _ts(column: str) -> pl.Expr:
    return pl.col(column).dt.to_string("%Y-%m-%dT%H:%M:%SZ")


def _evidence(kind: str, records: pl.DataFrame) -> pl.DataFrame:
    contract = schemas.contract(kind)
    id_, version = contract.id_field, contract.version_field
    ordered = records.sort("offset")
    # Old and new values, and late versions, exist only for records sent more than once: only
    # those (few) are walked and windowed; the rest of the study costs a filter.
    repeated = ordered.filter(pl.col(id_).is_duplicated())
    highest = repeated.select(
        "event_id", _highest_before=pl.col(version).cum_max().shift(1).over(id_)
    )
    ordered = ordered.join(highest, on="event_id", how="left", maintain_order="left")
    rows = []
    previous: dict[str, dict] = {}
    versioned = repeated.sort(id_, version)
    for row in versioned.iter_rows(named=True):
        before = previous.get(row[id_])
        if before is not None:
            changed = {
                k for k in row if k not in _SKIP and not k.startswith("_") and row[k] != before[k]
            }
            rows.append(
                (
                    row["event_id"],
                    canonical_json({k: before[k] for k in sorted(changed)}),
                    canonical_json({k: row[k] for k in sorted(changed)}),
                )
            )
        previous[row[id_]] = row
    diffs = pl.DataFrame(
        rows,
        schema={"event_id": pl.String(), "old_value": pl.String(), "new_value": pl.String()},
        orient="row",
    )
    late = pl.col("_highest_before").is_not_null() & (pl.col(version) < pl.col("_highest_before"))
    return ordered.join(diffs, on="event_id", how="left", maintain_order="left").select(
        at=_ts(WHEN.get(kind, "entered_at")),
        kind=pl.lit(kind),
        action=pl.when(late)
        .then(pl.lit("LATE_VERSION_KEPT"))
        .when(pl.col("deleted").fill_null(False))
        .then(pl.lit("DELETED"))
        .when(pl.col(version) > 1)
        .then(pl.lit("CORRECTED"))
        .otherwise(pl.lit("CREATED")),
        who=pl.col(WHO.get(kind, "entered_by")),
        subject_id="subject_id",
        tract_id=pl.col("tract_id") if "tract_id" in records.columns else pl.lit(None, pl.String),
        what=pl.lit(f"{kind} ") + pl.col(id_) + pl.lit(" v") + pl.col(version).cast(pl.String),
        why="change_reason",
        old_value="old_value",
        new_value="new_value",
        event_id="event_id",
        offset="offset",
    )


def _signer(column: str) -> pl.Expr:
    return pl.col("printed_name") + pl.lit(" (") + pl.col(column) + pl.lit(")")


def _signed_requests(
    frame: pl.DataFrame, kind: str, action: str | pl.Expr, what: pl.Expr
) -> pl.DataFrame:
    """Rows of signed request events (unlock requests and approvals, lock requests for the
    DAG): the signer's printed name, the reason, and the signature's meaning."""
    return frame.select(
        at=_ts("signed_at"),
        kind=pl.lit(kind),
        action=action,
        who=_signer("signer"),
        subject_id=pl.lit(None, pl.String),
        tract_id=pl.lit(None, pl.String),
        what=what,
        why="reason",
        old_value=pl.lit(None, pl.String),
        new_value=pl.col("meaning") + pl.lit(" (signed, ") + pl.col("signed_via") + pl.lit(")"),
        event_id="event_id",
        offset="offset",
    )


def audit_trail(
    source: Records,
    study: str,
    cut: Cut | None = None,
    quorum: int | None = None,
    subject: str | None = None,
    subjects: list[str] | None = None,
) -> pl.DataFrame:
    """Every change of ``study`` in time order (up to ``cut`` when given). ``quorum``: the
    committee's, to derive decisions from votes (default: the rule set in force).

    ``subject``: only the rows of that subject (its id in any case, as the page's filter
    matches it), the same rows the whole trail has for it, read as such: a 100,000-subject
    study's trail is not built to show one subject's. ``subjects``: the subject ids to read for
    it (:func:`subjects_of`; looked up in ``source`` when not given)."""
    wanted = subjects
    if subject is not None and wanted is None:
        wanted = subjects_of(source, study, cut, subject)

    # every read at once: Polars runs the scans side by side (a lock's trail reads 19)
    reads = {(kind, study): wanted for kind in (*EVIDENCE_KINDS, *_TRAIL_KINDS)}
    reads |= {(kind, PLATFORM_WIDE): wanted for kind in _PLATFORM_KINDS}
    reads[("ingest_run", study)] = None  # the run of a rejected row, whoever it named
    scans = [records_at(source, kind, of, cut, only) for (kind, of), only in reads.items()]
    frames = dict(zip(reads, pl.collect_all(scans), strict=True))

    def read(kind: str, of: str = study) -> pl.DataFrame:
        return frames[(kind, of)]

    if quorum is None:
        from services.adjudicator.ruleset import load_ruleset

        quorum = load_ruleset().quorum
    parts = [_evidence(kind, read(kind)) for kind in EVIDENCE_KINDS]
    votes = read("committee_vote")
    parts.append(
        votes.select(
            at=_ts("signed_at"),
            kind=pl.lit("committee_vote"),
            action=pl.when(pl.col("replaces").is_not_null())
            .then(pl.lit("VOTE_REPLACES"))
            .otherwise(pl.lit("VOTE")),
            who=_signer("voter"),
            subject_id="subject_id",
            tract_id="tract_id",
            what=pl.col("conflict_type")
            + pl.lit(" ")
            + pl.col("conflict_id")
            + pl.lit(" ")
            + pl.col("vote_id"),
            why="rationale",
            old_value=pl.coalesce(
                pl.lit("replaces ") + pl.col("replaces"), pl.lit("rule: ") + pl.col("rule_outcome")
            ),
            new_value=pl.col("meaning") + pl.lit(" (signed, ") + pl.col("signed_via") + pl.lit(")"),
            event_id="event_id",
            offset="offset",
        )
    )
    derived = decisions_from_votes(votes, quorum).with_columns(
        who=pl.lit("signed by ") + pl.col("members").list.join(", "),
        event_id=pl.col("decision_id"),
    )
    unsigned = read("committee_decision").with_columns(
        who=pl.col("recorded_by")
        + pl.lit(" for ")
        + pl.col("members").list.join(", ")
        + pl.lit(" (unsigned: recorded before e-signatures)")
    )
    decisions = pl.concat(
        [
            d.select(*(c for c in _DECISION_COLUMNS), "who", "event_id", "offset")
            for d in (unsigned, derived)
        ],
        how="vertical_relaxed",
    )
    parts.append(
        decisions.select(
            at=_ts("decided_at"),
            kind=pl.lit("committee_decision"),
            action=pl.when(pl.col("supersedes").is_not_null())
            .then(pl.lit("DECISION_SUPERSEDES"))
            .otherwise(pl.lit("DECISION")),
            who="who",
            subject_id="subject_id",
            tract_id="tract_id",
            what=pl.col("conflict_type")
            + pl.lit(" ")
            + pl.col("conflict_id")
            + pl.lit(" ")
            + pl.col("decision_id"),
            why="rationale",
            old_value=pl.coalesce(
                pl.lit("superseded ") + pl.col("supersedes"),
                pl.lit("rule: ") + pl.col("rule_outcome"),
            ),
            new_value=pl.col("status")
            + pl.coalesce(pl.lit(" -> ") + pl.col("maps_to"), pl.lit("")),
            event_id="event_id",
            offset="offset",
        )
    )
    changes = read("conflict_change")
    parts.append(
        changes.select(
            at=_ts("at"),
            kind=pl.lit("conflict"),
            action="condition",
            who=pl.lit("adjudicator"),
            subject_id="subject_id",
            tract_id="tract_id",
            what=pl.col("conflict_type") + pl.lit(" ") + pl.col("conflict_id"),
            why="detail",
            old_value=pl.lit(None, pl.String),
            new_value="fingerprint",
            event_id="event_id",
            offset="offset",
        )
    )
    rejected = read("rejected_row")
    runs = read("ingest_run").select("ingest_run", "finished_at")
    parts.append(
        rejected.join(runs, on="ingest_run", how="left").select(
            at=_ts("finished_at"),
            kind=pl.lit("rejected_row"),
            action=pl.lit("REJECTED"),
            who=pl.lit("ingest ") + pl.col("ingest_run"),
            subject_id=pl.col("raw").str.json_path_match("$.subject_id"),
            tract_id=pl.col("raw").str.json_path_match("$.tract_id"),
            what=pl.col("file") + pl.lit(" line ") + pl.col("line").cast(pl.String),
            why="reason",
            old_value=pl.lit(None, pl.String),
            new_value="raw",
            event_id="event_id",
            offset="offset",
        )
    )
    unlocking = read("unlock_request")
    parts.append(
        _signed_requests(
            unlocking,
            "unlock_request",
            "action",
            pl.col("lock_id") + pl.lit(" ") + pl.col("request_id"),
        )
    )
    asked = read("lock_request")  # signed for the database_lock DAG to take
    what = pl.concat_str(pl.col("lock_id"), pl.lit(" ("), "level", pl.lit(") "), "request_id")
    parts.append(_signed_requests(asked, "lock_request", pl.lit("REQUEST"), what))
    locks = read("lock").filter(pl.col("action") != "CLAIM")  # a reservation, not a change
    parts.append(
        locks.select(
            at=_ts("at"),
            kind=pl.lit("lock"),
            action="action",
            who=pl.col("requested_by")
            + pl.coalesce(
                pl.lit(" approved by ") + pl.col("approvers").list.join(", "), pl.lit("")
            ),
            subject_id=pl.lit(None, pl.String),
            tract_id=pl.lit(None, pl.String),
            what=pl.col("lock_id") + pl.lit(" (") + pl.col("level") + pl.lit(")"),
            why="reason",
            old_value=pl.lit(None, pl.String),
            new_value="location",
            event_id="event_id",
            offset="offset",
        )
    )
    parts += [query_audit(read("site_query")), assignment_audit(read("assignment"))]
    accounts = read("account", PLATFORM_WIDE)  # what each signature is checked against
    parts.append(
        accounts.select(
            at=_ts("at"),
            kind=pl.lit("account"),
            action="action",
            who="by",
            subject_id=pl.lit(None, pl.String),
            tract_id=pl.lit(None, pl.String),
            what="username",
            why=pl.lit(None, pl.String),
            old_value=pl.lit(None, pl.String),
            new_value=pl.concat_str(
                "role",
                pl.lit(", signs as "),
                pl.col("full_name").fill_null(""),
                pl.when("active").then(pl.lit("")).otherwise(pl.lit(", removed")),
                pl.lit(", password "),
                pl.col("credential").str.slice(0, 12),
                pl.when(pl.col("temporary").fill_null(False))
                .then(pl.lit(" (temporary: set by an administrator)"))
                .otherwise(pl.lit("")),
                pl.when(pl.col("chair").fill_null(False))
                .then(pl.lit(", chairs the committee"))
                .otherwise(pl.lit("")),
            ),
            event_id="event_id",
            offset="offset",
        )
    )
    access = pl.concat([read("access", s) for s in (study, PLATFORM_WIDE)])
    parts.append(
        access.select(
            at=_ts("at"),
            kind=pl.lit("access"),
            action=pl.col("action") + pl.lit(" ") + pl.col("outcome"),
            who=pl.col("who")
            + pl.coalesce(pl.lit(" (") + pl.col("role") + pl.lit(")"), pl.lit("")),
            subject_id="subject_id",
            tract_id="tract_id",
            what=pl.coalesce("conflict_id", "path"),
            why="detail",
            old_value=pl.lit(None, pl.String),
            new_value="outcome",
            event_id="event_id",
            offset="offset",
        )
    )
    trail = pl.concat([p.cast(AUDIT_SCHEMA) for p in parts])
    if subject is not None:
        trail = trail.filter(subject_is(subject))
    return trail.sort("at", "kind", "offset")


_BY_SUBJECT = (
    "committee_vote",
    "committee_decision",
    "conflict_change",
    "rejected_row",
    "site_query",
    "assignment",
    "access",
)
"""The kinds besides the evidence whose rows name a subject (the others name none)."""
AUDIT_KINDS = (
    *EVIDENCE_KINDS,
    *("committee_vote", "committee_decision", "conflict", "rejected_row", "unlock_request"),
    *("lock_request", "lock", "site_query", "assignment", "account", "access"),
)
"""Every ``kind`` a row of the trail can have."""


def subjects_of(
    source: Records,
    study: str,
    cut: Cut | None,
    subject: str,
    kinds: Sequence[str] | None = None,
) -> list[str]:
    """The subject ids (exactly as recorded) whose records one subject's trail is built from:
    every spelling of ``subject`` in any case, and the subjects an evidence record named in
    its other versions (a correction may move a record to another subject; its row's old and
    new values need both). Found from two columns of each kind (ids: nothing a role has
    withheld, and nothing shown); the trail then reads only those subjects' records.
    ``kinds``: look in these only (default: every kind the trail reads by subject)."""
    found: set[str] = set()
    if kinds is None:
        wanted = [(kind, study) for kind in (*EVIDENCE_KINDS, *_BY_SUBJECT)]
        wanted.append(("access", PLATFORM_WIDE))
    else:
        wanted = [(kind, study) for kind in kinds]
    for kind, of in wanted:
        id_field = schemas.contract(kind).id_field if kind in EVIDENCE_KINDS else None
        columns = ["subject_id", *([id_field] if id_field else [])]
        upto = None if cut is None else cut.get(kind, 0)
        records = source.records(kind, of, upto, columns=columns)
        named = records.filter(subject_is(subject))
        if id_field:
            named = records.join(named.select(id_field).unique(), on=id_field, how="semi")
        found.update(named.select("subject_id").unique().collect()["subject_id"].to_list())
    return sorted(s for s in found if s is not None)


# Longest text kept per access field: a stranger's input is logged, never a stranger's megabyte.
FIELD_LIMITS = {
    "who": 128,
    "role": 32,
    "detail": 2000,
    "conflict_id": 64,
    "subject_id": 64,
    "tract_id": 64,
    "path": 512,
    "client": 64,
    "study": 64,
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def bounded(value: object, limit: int) -> str | None:
    """``value`` as one line of at most ``limit`` characters, with a marker saying how much was
    cut (control characters, e.g. newlines, become U+FFFD so a log line cannot be forged)."""
    if value is None:
        return None
    text = _CONTROL.sub("\ufffd", str(value))
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[truncated {len(text) - limit} chars]"


def access_event(
    *,
    who: str,
    role: str | None,
    action: str,
    outcome: str,
    detail: str | None = None,
    study: str | None = None,
    conflict_id: str | None = None,
    subject_id: str | None = None,
    tract_id: str | None = None,
    path: str | None = None,
    client: str | None = None,
) -> Event:
    """One access record, every text field bounded (``FIELD_LIMITS``); ``study`` None files it
    as platform-wide (shown in every trail)."""
    fields = {
        "who": who or "anonymous",
        "role": role,
        "detail": detail,
        "conflict_id": conflict_id,
        "subject_id": subject_id,
        "tract_id": tract_id,
        "path": path,
        "client": client,
    }
    payload = {
        "access_id": uuid.uuid4().hex,
        **{name: bounded(value, FIELD_LIMITS[name]) for name, value in fields.items()},
        "action": action,
        "outcome": outcome,
        "at": utc_now(),
    }
    return make_event(
        "access",
        bounded(study, FIELD_LIMITS["study"]) or PLATFORM_WIDE,
        payload["subject_id"] or "",
        payload,
        payload["access_id"],
    )
