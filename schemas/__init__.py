"""Event contracts: the one source of truth for columns, types and validation.

Each ``events/<kind>.yaml`` declares one versioned event kind. Ingest validation, the Polars
frames of the adjudicator and the Arrow schemas of locked snapshots are all derived from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import yaml

if TYPE_CHECKING:
    import pyarrow as pa

SCALAR_TYPES = ("string", "int", "float", "date", "timestamp", "bool", "enum", "json")
LIST_TYPES = ("list_float", "list_string")
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"
"""How a ``timestamp`` field is written in files and events: UTC, to the second or finer."""


def load_yaml(text: str) -> Any:
    """YAML with libyaml's safe loader when it is there (ten times faster than the pure-Python
    one: every command reads the contracts), else PyYAML's own."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool = False
    values: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    length: int | None = None
    max_length: int | None = None  # characters, for text fields: a longer value is rejected
    default: Any = None


@dataclass(frozen=True)
class Source:
    file: str
    format: str  # "csv" or "jsonl"
    # JSON Lines: a line is parsed as a whole only within these bounds; a value nested deeper
    # or a longer line is read without being unfolded (and rejected by its field's type).
    max_depth: int = 16
    max_line_chars: int = 1_048_576


@dataclass(frozen=True)
class Contract:
    kind: str
    version: int
    fields: tuple[Field, ...]
    source: Source | None = None
    id_field: str | None = None
    version_field: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)


def _load(path: Path) -> Contract:
    raw = load_yaml(path.read_text())
    fields = []
    for name, spec in raw["fields"].items():
        if spec["type"] not in SCALAR_TYPES + LIST_TYPES:
            raise ValueError(f"{path.name}: field {name} has unknown type {spec['type']!r}")
        fields.append(Field(name=name, **{**spec, "values": tuple(spec.get("values", ()))}))
    identity = raw.get("identity", {})
    source = Source(**raw["source"]) if raw.get("source") else None
    return Contract(
        kind=raw["kind"],
        version=int(raw["version"]),
        fields=tuple(fields),
        source=source,
        id_field=identity.get("id"),
        version_field=identity.get("version"),
    )


@cache
def contracts() -> dict[str, Contract]:
    """Every event contract, by kind."""
    folder = resources.files(__package__) / "events"
    found = [_load(Path(str(p))) for p in folder.iterdir() if p.name.endswith(".yaml")]
    return {c.kind: c for c in sorted(found, key=lambda c: c.kind)}


def contract(kind: str) -> Contract:
    try:
        return contracts()[kind]
    except KeyError:
        raise KeyError(f"no event contract {kind!r}; known: {', '.join(contracts())}") from None


def source_contracts() -> dict[str, Contract]:
    """The kinds that arrive as transfer files, by file name (``clinical_exams.csv`` ...)."""
    return {c.source.file: c for c in contracts().values() if c.source}


def rules_path(version: int = 1) -> Path:
    return Path(str(resources.files(__package__) / f"rules-v{version}.yaml"))


_POLARS: dict[str, pl.DataType] = {
    "string": pl.String(),
    "enum": pl.String(),
    "json": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us", "UTC"),
    "list_float": pl.List(pl.Float64()),
    "list_string": pl.List(pl.String()),
}


def polars_schema(c: Contract) -> pl.Schema:
    return pl.Schema({f.name: _POLARS[f.type] for f in c.fields})


def arrow_schema(c: Contract) -> pa.Schema:
    """The Arrow schema of a kind's payload columns, for snapshots on disk (pyarrow is
    imported here: every command reads the contracts, few need Arrow)."""
    import pyarrow as pa

    empty = pl.DataFrame(schema=polars_schema(c)).to_arrow().schema
    return pa.schema(
        [f.with_nullable(not c.field(f.name).required) for f in empty],
        metadata={"kind": c.kind, "contract_version": str(c.version)},
    )
