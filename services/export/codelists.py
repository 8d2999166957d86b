"""Codelists resolved for one export: the terms of ``schemas/cdisc/codelists.yaml``, with the
lists built from the dataset specs (test codes, PARAMCDs) and from the study's visits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.export.errors import ExportError
from services.export.spec import Standard, raw_codelists


@dataclass(frozen=True)
class Codelist:
    oid: str
    name: str
    terms: dict[str, str | None]  # coded value -> decode (None: enumerated, no decode)
    nci: str | None = None
    extended: frozenset[str] = frozenset()
    type: str = "text"

    @property
    def values(self) -> list[str]:
        return list(self.terms)


def _terms(raw: Any) -> dict[str, str | None]:
    if isinstance(raw, dict):
        return {str(k): (None if v is None else str(v)) for k, v in raw.items()}
    return {str(v): None for v in raw or ()}


def _from_spec(where: dict[str, str], standards: list[Standard]) -> dict[str, str | None]:
    """Test codes or names (``part``) of the datasets ``where['dataset']`` names."""
    found: dict[str, str | None] = {}
    for std in standards:
        for name, ds in std.datasets.items():
            if where["dataset"] == "SUPP" and name.startswith("SUPP"):
                entries = {q: spec["label"] for q, spec in ds.qnams.items()}
            elif where["dataset"] == "AD" and name.startswith("AD"):
                entries = {p: spec["param"] for p, spec in ds.params.items()}
            elif name == where["dataset"]:
                entries = {t: spec.get("test", t) for t, spec in ds.tests.items()}
            else:
                continue
            for code, label in entries.items():
                if where["part"] == "code":
                    found[code] = label
                else:
                    found[label] = None
    return found


def resolve(standards: list[Standard], study: dict[str, Any]) -> dict[str, Codelist]:
    """Every codelist the given standards' variables name, with its terms."""
    raw = raw_codelists()
    visits = study["visits"]
    built: dict[str, Codelist] = {}

    def build(name: str) -> Codelist:
        if name in built:
            return built[name]
        if name not in raw:
            raise ExportError(f"codelist {name} is named by a variable but not in codelists.yaml")
        spec = raw[name]
        source = spec.get("from")
        if "union" in spec:
            terms: dict[str, str | None] = {}
            extended: set[str] = set()
            for part in spec["union"]:
                terms |= build(part).terms
                extended |= build(part).extended
        else:
            if source == "study":
                key = "num" if name == "VISITNUM" else "visit"
                terms = {str(v[key]): v["visit"] if key == "num" else None for v in visits}
            elif isinstance(source, dict):
                terms = _from_spec(source, standards)
            else:
                terms = _terms(spec.get("terms"))
            marked = spec.get("extended", ())
            extended = set(terms) if marked == "all" else set(marked)
        built[name] = Codelist(
            oid=f"CL.{name}",
            name=spec["name"],
            terms=terms,
            nci=spec.get("nci"),
            extended=frozenset(extended),
            type=spec.get("type", "text"),
        )
        return built[name]

    for std in standards:
        for ds in std.datasets.values():
            for variable in ds.variables:
                if variable.codelist:
                    build(variable.codelist)
            for spec in [*ds.tests.values(), *ds.qnams.values()]:
                if spec.get("codelist"):
                    build(spec["codelist"])
    return built
