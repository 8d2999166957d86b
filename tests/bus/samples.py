"""A valid event of every contract kind, built from the contracts themselves, so a new kind is
covered by the round-trip tests the day its contract lands."""

from __future__ import annotations

import json
from typing import Any

import schemas
from schemas import Field
from services.events import Event, make_event

STUDY = "ST-KAFKA"


def sample_value(f: Field, i: int = 0) -> Any:
    if f.type == "enum":
        return f.values[i % len(f.values)]
    if f.type == "int":
        return int(f.min if f.min is not None else 1) + (i if f.max is None else 0)
    if f.type == "float":
        return float(f.min if f.min is not None else 0) + 1.5
    if f.type == "bool":
        return i % 2 == 0
    if f.type == "date":
        return "2025-01-02"
    if f.type == "timestamp":
        return "2025-01-02T03:04:05Z"
    if f.type == "json":
        return json.dumps({"n": i})
    if f.type == "list_float":
        return [1.0, 2.5, 0.0]
    if f.type == "list_string":
        return ["dr.a", "dr.b"]
    return f"{f.name}-{i}"


def sample_event(kind: str, i: int = 0, subject: str = "S01") -> Event:
    contract = schemas.contract(kind)
    payload = {f.name: sample_value(f, i) for f in contract.fields}
    if "subject_id" in payload:
        payload["subject_id"] = subject
    return make_event(kind, STUDY, subject, payload)


def every_kind() -> list[Event]:
    return [sample_event(kind, i) for i, kind in enumerate(sorted(schemas.contracts()))]
