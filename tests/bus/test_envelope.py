"""Events as Kafka records: the round trip keeps every field, and whatever is not a valid
event is refused with the field and the reason a dead letter will carry."""

from __future__ import annotations

import json

import pytest

import schemas
from services.bus.envelope import dead_letter, decode, encode
from services.bus.errors import MalformedEventError

from .samples import STUDY, every_kind, sample_event


@pytest.mark.parametrize("event", every_kind(), ids=lambda e: e.kind)
def test_every_kind_round_trips(event) -> None:
    key, value, headers = encode(event)
    assert key == f"{STUDY}/{event.subject_id}".encode()
    named = dict(headers)
    assert named["event_id"] == event.event_id.encode()
    assert named["schema_version"] == str(schemas.contract(event.kind).version).encode()
    back = decode(event.kind, value, headers, offset=7)
    assert back == event
    assert back.offset == 7
    assert back.value() == event.value()


def _record(event, **changes):
    _, value, headers = encode(event)
    named = dict(headers) | {k: v for k, v in changes.items() if k != "value"}
    return changes.get("value", value), [(k, v) for k, v in named.items() if v is not None]


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"event_id": None}, "headers", "missing event_id"),
        ({"kind": b"mri_read"}, "header kind", "says 'mri_read'"),
        ({"schema_version": b"9"}, "header schema_version", "v9 is not supported"),
        ({"value": b"{not json"}, "value", "not UTF-8 JSON"),
        ({"value": b"\xff\xfe"}, "value", "not UTF-8 JSON"),
        ({"value": b"[1, 2]"}, "value", "must be a JSON object"),
    ],
)
def test_a_broken_envelope_names_what_is_wrong(changes, field, reason) -> None:
    value, headers = _record(sample_event("clinical_exam"), **changes)
    with pytest.raises(MalformedEventError) as refused:
        decode("clinical_exam", value, headers)
    assert refused.value.field == field
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("field", "bad", "reason"),
    [
        ("discharge_grade", 7, "within 0"),
        ("discharge_grade", "2", "must be an int"),
        ("external_opening", "AJAR", "must be one of OPEN, CLOSED"),
        ("exam_date", "2025-13-40", "YYYY-MM-DD"),
        ("entered_at", "2025-01-02 03:04", "UTC timestamp"),
        ("drains_on_compression", "Y", "true or false"),
        ("record_id", None, "is required"),
    ],
)
def test_a_payload_against_its_contract(field, bad, reason) -> None:
    event = sample_event("clinical_exam")
    payload = event.payload | {field: bad}
    _, _, headers = encode(event)
    with pytest.raises(MalformedEventError) as refused:
        decode("clinical_exam", json.dumps(payload).encode(), headers)
    assert refused.value.field == field
    assert reason in refused.value.reason


def test_extra_payload_fields_are_kept() -> None:
    event = sample_event("clinical_exam")
    _, _, headers = encode(event)
    payload = event.payload | {"source_file": "clinical_exams.csv", "source_line": 3}
    assert decode("clinical_exam", json.dumps(payload).encode(), headers).payload == payload


def test_a_dead_letter_says_where_and_why_and_keeps_its_id() -> None:
    problem = MalformedEventError("value", "is not UTF-8 JSON (boom)")
    headers = [("study", b"EXO1"), ("subject_id", b"S07")]
    letter = dead_letter("mri_read", "t.mri_read", 2, 41, b"{oops", headers, problem)
    again = dead_letter("mri_read", "t.mri_read", 2, 41, b"{oops", headers, problem)
    assert letter.kind == "rejected_row" and letter.event_id == again.event_id
    assert (letter.study, letter.subject_id) == ("EXO1", "S07")
    assert letter.payload["file"] == "kafka:t.mri_read[2]" and letter.payload["line"] == 41
    assert letter.payload["reason"] == "is not UTF-8 JSON (boom)"
    assert json.loads(letter.payload["raw"])["value"] == "{oops"
    schemas_ok = decode("rejected_row", *_record(letter))  # a dead letter is itself valid
    assert schemas_ok == letter
