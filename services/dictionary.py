"""The data dictionary of a lock, generated from one source: the event contracts
(``schemas/events/*.yaml``: types, allowed values, ranges) and ``schemas/dictionary.yaml``
(the meaning of every event field, and the derived tables: type, meaning, values, rule).

Three views of the same data: :func:`dictionary` (JSON-ready, for ``dictionary.json``),
:func:`dictionary_markdown` (``DICTIONARY.md``) and :func:`field_metadata` (Parquet field
metadata, per column). Meanings name the rule set's parameters, filled from the rule set the
lock used, so a threshold changed in the rule set reads correctly in the dictionary.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

import schemas
from services.adjudicator.ruleset import RuleSet, load_ruleset
from services.adjudicator.state import EVIDENCE_KINDS

SOURCE = Path(str(resources.files("schemas") / "dictionary.yaml"))
ENVELOPE = ("offset", "event_id")
_CONTRACT_TYPES = {
    "string": "string",
    "enum": "string",
    "json": "string",
    "int": "int64",
    "float": "float64",
    "bool": "bool",
    "date": "date",
    "timestamp": "timestamp",
    "list_float": "list<float64>",
    "list_string": "list<string>",
}
_ENVELOPE_TYPES = {"offset": "int64", "event_id": "string"}


def rule_parameters(rules: RuleSet) -> dict[str, Any]:
    """The rule set's parameters by the names the dictionary and define.xml texts use."""
    return {
        "rule_set": rules.label,
        "visits": ", ".join(rules.visits),
        "primary_visit": rules.primary_visit,
        "baseline_visit": rules.baseline_discharge_visit,
        "final_mri": rules.final_mri,
        "confirmations": rules.clinical.confirmations,
        "confirmation_visits": ", ".join(rules.confirmation_visits),
        "min_gap_days": rules.clinical.min_gap_days,
        "collection_mm": f"{rules.mri.collection_mm:g}",
        "collection_dims": rules.mri.collection_dims,
        "min_drop": rules.discharge.min_drop,
        "quorum": rules.quorum,
        "response_pct": f"{100 * rules.response_fraction:g}",
        "confidence_pct": f"{100 * rules.confidence_level:g}",
    }


def polars_type(dtype: pl.DataType) -> str:
    """A frame's column type in the dictionary's words (``list<string>``, ``timestamp`` ...)."""
    if isinstance(dtype, pl.List):
        return f"list<{polars_type(dtype.inner)}>"
    if isinstance(dtype, pl.Datetime):
        return "timestamp"
    names = {pl.String: "string", pl.Boolean: "bool", pl.Date: "date"}
    for base, name in names.items():
        if dtype == base:
            return name
    return str(dtype).lower()


@cache
def dictionary_source() -> dict[str, Any]:
    """``schemas/dictionary.yaml``, parsed once per process (the scheduler parses it before it
    forks the DAGs' tasks: infra/airflow/airflow_local_settings.py)."""
    return schemas.load_yaml(SOURCE.read_text())


def _event_table(
    kind: str, meanings: dict[str, dict[str, str]], params: dict[str, Any]
) -> dict[str, Any]:
    contract = schemas.contract(kind)
    words = meanings.get(kind, {})
    columns: dict[str, Any] = {
        name: {
            "type": _ENVELOPE_TYPES[name],
            "meaning": meanings["envelope"][name],
            "required": True,
        }
        for name in ENVELOPE
    }
    for f in contract.fields:
        entry: dict[str, Any] = {
            "type": _CONTRACT_TYPES[f.type],
            "meaning": str(words.get(f.name, "")).format(**params),
            "required": f.required,
        }
        if f.values:
            entry["values"] = list(f.values)
        if f.min is not None or f.max is not None:
            entry["range"] = [f.min, f.max]
        if f.length is not None:
            entry["length"] = f.length
        columns[f.name] = entry
    identity = [contract.id_field, contract.version_field] if contract.id_field else []
    return {
        "file": f"events/{kind}.parquet",
        "description": f"Every accepted version of every {kind} event up to the cut "
        f"(contract {kind} v{contract.version}); "
        + (
            "the current version of a record is its highest version, unless deleted."
            if identity
            else "append-only."
        ),
        "key": ["event_id"],
        "record_identity": identity,
        "columns": columns,
    }


def dictionary(rules: RuleSet | None = None) -> dict[str, Any]:
    """Every table of a lock and every column: type, meaning, allowed values, the rule that sets it."""
    rules = rules or load_ruleset()
    params = rule_parameters(rules)
    source = dictionary_source()
    tables: dict[str, Any] = {}
    for name, table in source["tables"].items():
        tables[name] = {
            "file": f"{name}.parquet",
            "description": table["description"].format(**params),
            "key": table["key"],
            "columns": {
                column: {k: (v.format(**params) if k == "meaning" else v) for k, v in spec.items()}
                for column, spec in table["columns"].items()
            },
        }
    for kind in schemas.contracts():
        tables[f"events/{kind}"] = _event_table(kind, source["events"], params)
    for kind in EVIDENCE_KINDS:
        # The current-version tables a lock may carry (state.current: same columns).
        table = _event_table(kind, source["events"], params)
        tables[f"current/{kind}"] = table | {
            "file": f"current/{kind}.parquet",
            "description": f"The current version of every {kind} record at the cut (highest "
            "version; deleted records left out), as the lock's checks saw them.",
            "key": table["record_identity"],
        }
    return {"rule_set": rules.label, "rule_parameters": params, "tables": tables}


def field_metadata(table: str, rules: RuleSet | None = None) -> dict[str, dict[bytes, bytes]]:
    """Parquet field metadata per column of ``table`` (``tract_outcomes``, ``events/subject``
    ...): ``description``, ``type``, and where known ``values``, ``range`` (JSON) and ``rule``.
    Give each ``pyarrow.field(...).with_metadata(...)`` its column's dict."""
    columns = dictionary(rules)["tables"][table]["columns"]
    out: dict[str, dict[bytes, bytes]] = {}
    for name, spec in columns.items():
        meta = {b"description": spec["meaning"].encode(), b"type": spec["type"].encode()}
        for key in ("values", "range"):
            if key in spec:
                meta[key.encode()] = json.dumps(spec[key]).encode()
        if "rule" in spec:
            meta[b"rule"] = spec["rule"].encode()
        out[name] = meta
    return out


def _cell(value: Any) -> str:
    text = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def dictionary_markdown(data: dict[str, Any] | None = None) -> str:
    """``DICTIONARY.md``: a section per table, a row per column."""
    data = data or dictionary()
    lines = [
        "# Data dictionary",
        "",
        f"Rule set {data['rule_set']}. Generated from the event contracts (`schemas/events/`) and "
        "`schemas/dictionary.yaml`; every Parquet column carries the same text as field metadata.",
        "",
    ]
    for name, table in data["tables"].items():
        lines += [f"## {name}", "", f"`{table['file']}`: {table['description']}", ""]
        lines += [f"Key: {', '.join(table['key'])}.", ""]
        lines += ["| column | type | meaning | allowed values | rule |", "|---|---|---|---|---|"]
        for column, spec in table["columns"].items():
            allowed = _cell(spec.get("values", "")) or (
                f"{spec['range'][0]} to {spec['range'][1]}" if "range" in spec else ""
            )
            lines.append(
                f"| {column} | {spec['type']} | {_cell(spec['meaning'])} | {allowed} | {spec.get('rule', '')} |"
            )
        lines.append("")
    return "\n".join(lines)
