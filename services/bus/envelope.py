"""Events as Kafka records and back: key, value and headers, checked against the contracts.

Why pure: the adapter moves bytes; whether those bytes are an event we can apply is decided
here, without a broker, so a malformed message becomes a dead letter with a reason instead of
a crash or a poisoned state. Key = ``study/subject_id`` (a subject's events stay on one
partition, in order); value = the canonical JSON payload; headers carry the event id, kind,
schema version, study and subject.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

import schemas
from schemas import Contract, Field
from services.bus.errors import MalformedEventError
from services.events import Event, canonical_json, digest

HEADERS = ("event_id", "kind", "schema_version", "study", "subject_id")
_NON_EMPTY = ("event_id", "kind", "schema_version")  # study and subject may be "" (study-wide)
_TIMESTAMP = re.compile(schemas.TIMESTAMP_PATTERN)

Record = tuple[bytes, bytes, list[tuple[str, bytes]]]
FRAME_SCHEMA = pl.Schema(
    {
        "offset": pl.Int64(),
        "event_id": pl.String(),
        "study": pl.String(),
        "subject_id": pl.String(),
        "payload": pl.String(),
    }
)
"""Events with their payload as JSON text, one row each (the Kafka service's frames)."""


@dataclass(frozen=True, eq=False)
class ReceivedEvent(Event):
    """An event that keeps the JSON text it arrived as (or was first serialised to), so
    storing and re-sending it does not serialise the payload again."""

    text: str = field(default="", compare=False, repr=False)

    def value(self) -> str:
        return self.text or super().value()

    def __eq__(self, other: object) -> bool:
        """Equal to the plain Event it carries (the text is a cache, not identity)."""
        if not isinstance(other, Event):
            return NotImplemented
        return _identity(self) == _identity(other)

    __hash__ = None  # type: ignore[assignment]


def _identity(e: Event) -> tuple:
    return (e.kind, e.study, e.subject_id, e.event_id, e.payload, e.schema_version)


def keep_text(event: Event, offset: int | None = None) -> ReceivedEvent:
    """The same event with its serialised payload kept (and ``offset`` set if given)."""
    return ReceivedEvent(
        event.kind,
        event.study,
        event.subject_id,
        event.event_id,
        event.payload,
        event.schema_version,
        event.offset if offset is None else offset,
        event.value(),
    )


def encode(event: Event) -> Record:
    """(key, value, headers) of one event."""
    headers = [
        ("event_id", event.event_id.encode()),
        ("kind", event.kind.encode()),
        ("schema_version", str(event.schema_version).encode()),
        ("study", event.study.encode()),
        ("subject_id", event.subject_id.encode()),
    ]
    return event.key.encode(), event.value().encode(), headers


def decode(
    kind: str,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None,
    offset: int | None = None,
) -> Event:
    """The event in a record of ``kind``'s topic; raise MalformedEventError saying what is wrong."""
    found: dict[str, str] = {}
    for name, raw in headers or ():
        try:
            found[name] = (raw or b"").decode()
        except UnicodeDecodeError:
            raise MalformedEventError(f"header {name}", "is not UTF-8") from None
    missing = [h for h in HEADERS if h not in found or (not found[h] and h in _NON_EMPTY)]
    if missing:
        raise MalformedEventError(
            "headers", f"missing {', '.join(missing)}; publish through the platform's KafkaBus"
        )
    if found["kind"] != kind:
        raise MalformedEventError(
            "header kind", f"says {found['kind']!r} but the topic carries {kind!r}"
        )
    contract = schemas.contract(kind)
    if found["schema_version"] != str(contract.version):
        raise MalformedEventError(
            "header schema_version",
            f"{kind} v{found['schema_version']} is not supported (this service reads "
            f"v{contract.version}); upgrade the service or republish as v{contract.version}",
        )
    try:
        text = (value or b"").decode()
        payload = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEventError("value", f"is not UTF-8 JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise MalformedEventError("value", f"must be a JSON object, got {type(payload).__name__}")
    check_payload(contract, payload)
    return ReceivedEvent(
        kind,
        found["study"],
        found["subject_id"],
        found["event_id"],
        payload,
        contract.version,
        offset,
        text,
    )


def check_payload(contract: Contract, payload: dict[str, Any]) -> None:
    """Every contract field present when required and of its type; extra fields are allowed
    (ingest adds source_file, source_line, ingest_run and content_hash)."""
    for f in contract.fields:
        value = payload.get(f.name)
        if value is None:
            if f.required:
                raise MalformedEventError(f.name, f"is required by the {contract.kind} contract")
            continue
        problem = _type_problem(f, value)
        if problem:
            raise MalformedEventError(f.name, f"{problem}, got {value!r:.80}")


def _type_problem(f: Field, value: Any) -> str | None:
    kind = f.type
    if kind in ("string", "json"):
        return None if isinstance(value, str) else "must be a string"
    if kind == "enum":
        return None if value in f.values else f"must be one of {', '.join(f.values)}"
    if kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if kind in ("int", "float"):
        number = (int,) if kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, number):
            return f"must be an {kind}" if kind == "int" else "must be a number"
        if (f.min is not None and value < f.min) or (f.max is not None and value > f.max):
            return f"must be within {f.min}..{f.max}"
        return None
    if kind == "date":
        try:
            date.fromisoformat(value)
            return None if len(value) == 10 else "must be a YYYY-MM-DD date"
        except (TypeError, ValueError):
            return "must be a YYYY-MM-DD date"
    if kind == "timestamp":
        ok = isinstance(value, str) and _TIMESTAMP.match(value)
        return None if ok else "must be a UTC timestamp like 2025-03-04T10:15:00Z"
    if kind in ("list_float", "list_string"):
        item = str if kind == "list_string" else (int, float)
        ok = isinstance(value, list) and all(
            isinstance(v, item) and not isinstance(v, bool) for v in value if v is not None
        )
        return None if ok else f"must be a list of {'strings' if item is str else 'numbers'}"
    return f"has unknown contract type {kind}"


def dead_letter(
    kind: str,
    topic: str,
    partition: int,
    offset: int,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    problem: MalformedEventError,
) -> Event:
    """A ``rejected_row`` for a malformed record, naming where it sits and what is wrong.

    Its id comes from the record's position, so handling the same record again after a crash
    yields the same dead letter."""
    named = {k: (v or b"").decode(errors="replace") for k, v in headers}
    raw = {
        "headers": named,
        "value": (value or b"").decode(errors="replace")[:10_000],
    }
    payload = {
        "source_kind": kind,
        "file": f"kafka:{topic}[{partition}]",
        "line": offset,
        "field": problem.field,
        "reason": problem.reason,
        "raw": canonical_json(raw),
        "ingest_run": "adjudicator",
    }
    study = named.get("study", "")
    return Event(
        "rejected_row",
        study,
        named.get("subject_id", ""),
        digest("dead-letter", topic, partition, offset),
        payload,
    )
