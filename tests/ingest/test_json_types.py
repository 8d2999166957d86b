"""Strict JSON types (issue 10, item 5): every field of ``mri_reads.jsonl`` is checked against
its contract type. A value of another JSON type is a row rejection naming the field, however
convincing its text (``"1"`` for 1, ``1.0`` for an integer, ``"Y"`` for true, ``"[1,2,3]"``
for a list); the dead letter keeps the value as it was sent.
"""

from __future__ import annotations

import json
from pathlib import Path

import schemas
from schemas import Field

from .helpers import ingest, payloads, records

MRI = schemas.contract("mri_read")
BASE = {
    "read_id": "RD-0",
    "read_version": 1,
    "subject_id": "S01",
    "tract_id": "T1",
    "timepoint": "MRI_FINAL",
    "scan_date": "2025-06-01",
    "reader_id": "rad.a",
    "reader_role": "R1",
    "image_quality": "ADEQUATE",
    "t2_hyperintense": False,
    "fibrotic": True,
    "contrast_given": True,
    "enhancement": False,
    "collection_mm": [12, 8.5, 0],
    "read_at": "2025-06-03T09:00:00Z",
    "change_reason": None,
    "deleted": False,
}
# JSON texts by the JSON type they have; strings whose text would pass for another type.
SENT = {
    "string": ['"1"', '"1.0"', '"true"', '"Y"', '"N"', '"[1,2,3]"', '"2025-06-01"', '"R1"'],
    "number": ["12", "1", "0", "1.0", "1e0", "-3.5"],
    "boolean": ["true", "false"],
    "array": ['["x"]', "[1,2,3]", "[]", '["2025-06-01"]'],
    "object": ['{"a":1}', "{}", '{"value":"R1"}'],
}
ACCEPTS = {
    "string": {"string"},
    "enum": {"string"},
    "date": {"string"},
    "timestamp": {"string"},
    "int": {"number"},
    "float": {"number"},
    "bool": {"boolean"},
    "list_float": {"array"},
}


def wrong_values(f: Field) -> list[str]:
    """Every sample whose JSON type the field does not take, and numbers that are not
    integers for an integer field."""
    wrong = [v for kind, texts in SENT.items() if kind not in ACCEPTS[f.type] for v in texts]
    if f.type == "int":
        wrong += ["1.0", "1e0", "-3.5"]
    return wrong


def line(read_id: str, field: str, text: str) -> str:
    record = {**BASE, "read_id": read_id, field: "@"}
    return json.dumps(record).replace('"@"', text)


def test_every_value_of_the_wrong_json_type_is_rejected_naming_its_field(tmp_path: Path) -> None:
    cases = [(f.name, text) for f in MRI.fields for text in wrong_values(f)]
    path = tmp_path / "mri_reads.jsonl"
    lines = [json.dumps(BASE)] + [
        line(f"RD-{n}", field, text) for n, (field, text) in enumerate(cases, start=1)
    ]
    path.write_text("\n".join(lines) + "\n")

    run = ingest(tmp_path / "home", path)

    assert run.exit_code == 0, run.stderr
    report = run.report("mri_reads.jsonl")
    assert len(cases) > 150
    assert (report["read"], report["accepted"], report["rejected"]) == (
        len(cases) + 1,
        1,
        len(cases),
    )
    named = [(r["line"], r["field"]) for r in report["rejections"]]
    assert named == [(n, field) for n, (field, _) in enumerate(cases, start=2)]
    for rejection in report["rejections"]:
        assert rejection["reason"].startswith(f"{rejection['field']} ")


def test_the_dead_letter_keeps_the_value_as_sent(tmp_path: Path) -> None:
    """A reviewer sees what the core lab sent: "1" and 1.0 are not shown as 1."""
    sent = [
        ("read_version", '"1"', "1"),
        ("read_version", "1.0", "1.0"),
        ("t2_hyperintense", '"Y"', "Y"),
        ("tract_id", '{"a": 1}', '{"a":1}'),
        ("collection_mm", '"[1,2,3]"', "[1,2,3]"),
        ("collection_mm", "[1, 2]", "[1,2]"),
    ]
    path = tmp_path / "mri_reads.jsonl"
    path.write_text("\n".join(line(f"RD-{n}", f, text) for n, (f, text, _) in enumerate(sent)))

    assert ingest(tmp_path / "home", path).exit_code == 0

    letters = payloads(tmp_path / "home", "rejected_row")
    assert [(p["field"], json.loads(p["raw"])[p["field"]]) for p in letters] == [
        (f, shown) for f, _, shown in sent
    ]
    raw = json.loads(letters[0]["raw"])
    assert (raw["deleted"], raw["fibrotic"], raw["change_reason"]) == ("false", "true", None)


def test_values_of_the_right_type_arrive_typed(tmp_path: Path) -> None:
    """Escapes, spaces and key order do not matter; the typed values are exact."""
    record = {**BASE, "reader_id": "rad.\u00e9 \u2028x", "read_version": 2, "change_reason": "re"}
    shuffled = dict(reversed(list(record.items())))
    path = tmp_path / "mri_reads.jsonl"
    path.write_text(json.dumps(shuffled, indent=None, separators=(" , ", " : ")) + "\n")

    run = ingest(tmp_path / "home", path)

    assert run.exit_code == 0 and run.report("mri_reads.jsonl")["accepted"] == 1, run.stdout
    row = records(tmp_path / "home", "mri_read").row(0, named=True)
    assert (row["reader_id"], row["read_version"], row["change_reason"]) == (
        "rad.\u00e9 \u2028x",
        2,
        "re",
    )
    assert (row["t2_hyperintense"], row["fibrotic"], row["deleted"]) == (False, True, False)
    assert row["collection_mm"] == [12.0, 8.5, 0.0]
