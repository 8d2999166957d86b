"""The data dictionary describes every column of what a lock holds, with the types the engine
really produces; it reads as JSON, Markdown and Parquet field metadata, from one source."""

from __future__ import annotations

import dataclasses
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

import schemas
from services.adjudicator.ruleset import ClinicalParams, load_ruleset
from services.dictionary import dictionary, dictionary_markdown, field_metadata, polars_type
from services.lock.snapshot import EVENT_KINDS
from tests.export.conftest import Locked

ENGINE_TABLES = ("tract_outcomes", "patient_outcomes", "conflicts", "audit")


def test_every_column_of_the_engines_tables_and_the_audit_trail_is_described(
    demo_lock: Locked,
) -> None:
    tables = dictionary()["tables"]
    for name in ENGINE_TABLES:
        frame = demo_lock.snapshot.tables[name]
        described = tables[name]["columns"]
        assert list(described) == frame.columns, name
        for column, dtype in frame.schema.items():
            assert described[column]["type"] == polars_type(dtype), f"{name}.{column}"
            assert described[column]["meaning"].strip(), f"{name}.{column}"


def test_every_locked_event_kind_is_described_with_its_real_types(demo_lock: Locked) -> None:
    tables = dictionary()["tables"]
    for kind in EVENT_KINDS:
        frame = demo_lock.snapshot.events[kind]
        described = tables[f"events/{kind}"]["columns"]
        assert list(described) == frame.columns, kind
        for column, dtype in frame.schema.items():
            assert described[column]["type"] == polars_type(dtype), f"{kind}.{column}"
            assert described[column]["meaning"].strip(), f"{kind}.{column}"


def test_every_contract_field_has_a_meaning_and_its_allowed_values() -> None:
    tables = dictionary()["tables"]
    for kind, contract in schemas.contracts().items():
        columns = tables[f"events/{kind}"]["columns"]
        for field in contract.fields:
            entry = columns[field.name]
            assert entry["meaning"], (
                f"{kind}.{field.name} has no meaning in schemas/dictionary.yaml"
            )
            assert entry.get("values", []) == list(field.values)
    assert tables["events/clinical_exam"]["columns"]["discharge_grade"]["range"] == [0, 4]


def test_meanings_carry_the_rule_sets_parameters() -> None:
    rules = load_ruleset()
    meanings = [
        spec["meaning"]
        for table in dictionary(rules)["tables"].values()
        for spec in table["columns"].values()
    ]
    assert [m for m in meanings if "{" in m or "}" in m] == []  # every placeholder filled
    clinical = dictionary(rules)["tables"]["tract_outcomes"]["columns"]["clinical"]
    assert "FU5, FU6" in clinical["meaning"] and "28 days" in clinical["meaning"]
    changed = dataclasses.replace(rules, clinical=ClinicalParams(confirmations=3, min_gap_days=21))
    clinical = dictionary(changed)["tables"]["tract_outcomes"]["columns"]["clinical"]
    assert "FU4, FU5, FU6" in clinical["meaning"] and "21 days" in clinical["meaning"]


def test_field_metadata_goes_onto_parquet_and_reads_back(demo_lock: Locked) -> None:
    frame = demo_lock.snapshot.tables["tract_outcomes"]
    metadata = field_metadata("tract_outcomes")
    assert set(metadata) == set(frame.columns)
    table = frame.to_arrow()
    schema = pa.schema([f.with_metadata(metadata[f.name]) for f in table.schema])
    buffer = io.BytesIO()
    pq.write_table(table.cast(schema), buffer)
    read = pq.read_schema(io.BytesIO(buffer.getvalue()))
    clinical = read.field("clinical").metadata
    assert clinical[b"rule"] == b"clinical.sustained"
    assert json.loads(clinical[b"values"]) == ["CLOSED", "NOT_CLOSED"]
    assert b"Sustained clinical closure" in clinical[b"description"]


def test_markdown_has_a_section_per_table_and_a_row_per_column() -> None:
    data = dictionary()
    text = dictionary_markdown(data)
    for name, table in data["tables"].items():
        assert f"## {name}\n" in text
        for column in table["columns"]:
            assert f"| {column} |" in text, f"{name}.{column}"


def test_current_version_tables_are_described_as_state_current_gives_them(
    demo_lock: Locked,
) -> None:
    from services.adjudicator.state import EVIDENCE_KINDS, current

    tables = dictionary()["tables"]
    for kind in EVIDENCE_KINDS:
        frame = current(demo_lock.snapshot.events[kind].lazy(), schemas.contract(kind)).collect()
        described = tables[f"current/{kind}"]["columns"]
        assert {c: described[c]["type"] for c in described} == {
            c: polars_type(t) for c, t in frame.schema.items()
        }, kind
