"""The CDISC metadata of the export, loaded from ``schemas/cdisc/*.yaml``: datasets, variables,
keys, origins, derivations and codelists. One source for the frames' columns, the XPT labels,
define.xml and the conformance suite."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from services.export.errors import ExportError

CDISC = Path(str(resources.files("schemas") / "cdisc"))
TYPES = ("text", "integer", "float", "date", "sasdate")
POLARS: dict[str, pl.DataType] = {
    "text": pl.String(),
    "integer": pl.Int64(),
    "float": pl.Float64(),
    "date": pl.String(),  # SDTM dates are ISO 8601 text
    "sasdate": pl.Date(),  # ADaM dates are numeric (SAS dates, DATE9.)
}


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    type: str
    core: str
    origin: str
    by: str | None = None
    source: str | None = None
    method: str | None = None
    codelist: str | None = None
    comment: str | None = None

    @property
    def dtype(self) -> pl.DataType:
        return POLARS[self.type]


@dataclass(frozen=True)
class Dataset:
    name: str
    label: str
    cls: str
    structure: str
    keys: tuple[str, ...]
    variables: tuple[Variable, ...]
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    qnams: dict[str, dict[str, Any]] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables)

    def variable(self, name: str) -> Variable:
        return next(v for v in self.variables if v.name == name)

    @property
    def schema(self) -> pl.Schema:
        return pl.Schema({v.name: v.dtype for v in self.variables})


@dataclass(frozen=True)
class Standard:
    """One standard's datasets (SDTMIG or ADaMIG) and the texts of their derivations."""

    name: str
    version: str
    publishing_set: str
    purpose: str
    datasets: dict[str, Dataset]
    methods: dict[str, str]


def _variable(item: str | dict[str, Any], domain: str, common: dict[str, Any]) -> Variable:
    if isinstance(item, str):
        if item not in common:
            raise ExportError(f"{domain}: variable {item} is neither spelled out nor in `common`")
        spec = {"name": item.replace("--", domain[:2])} | common[item]
    else:
        spec = dict(item)
    spec["source"] = spec.pop("from", None)
    if spec.get("type") not in TYPES:
        raise ExportError(f"{domain}.{spec.get('name')}: type must be one of {', '.join(TYPES)}")
    return Variable(**spec)


@cache
def standard(kind: str) -> Standard:
    """``sdtm`` or ``adam``, from ``schemas/cdisc/<kind>.yaml``."""
    raw = yaml.safe_load((CDISC / f"{kind}.yaml").read_text())
    common = raw.get("common", {})
    datasets = {
        name: Dataset(
            name=name,
            label=spec["label"],
            cls=spec["class"],
            structure=spec["structure"],
            keys=tuple(spec["keys"]),
            variables=tuple(_variable(v, name, common) for v in spec["variables"]),
            tests=spec.get("tests", {}),
            qnams=spec.get("qnams", {}),
            params=spec.get("params", {}),
        )
        for name, spec in raw["datasets"].items()
    }
    std = raw["standard"]
    return Standard(
        name=std["name"],
        version=str(std["version"]),
        publishing_set=std["publishing_set"],
        purpose=std["purpose"],
        datasets=datasets,
        methods=raw.get("methods", {}),
    )


@cache
def raw_codelists() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((CDISC / "codelists.yaml").read_text())


@cache
def default_study() -> dict[str, Any]:
    return yaml.safe_load((CDISC / "study.yaml").read_text())


def conform(frame: pl.DataFrame, dataset: Dataset) -> pl.DataFrame:
    """The frame with exactly the spec's columns, in its order and types (a builder that
    forgets a column is a bug: it fails here, before any conformance rule)."""
    missing = [c for c in dataset.columns if c not in frame.columns]
    if missing:
        raise ExportError(f"{dataset.name}: the builder produced no {', '.join(missing)}")
    return frame.select(pl.col(v.name).cast(v.dtype) for v in dataset.variables)
