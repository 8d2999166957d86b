"""The export's conformance suite: the rules of ``schemas/cdisc/conformance.yaml`` evaluated
with Polars on the datasets about to be written. A rule finds records; a finding names the rule,
the dataset, the record (1-based), USUBJID, the variable and its value. Errors stop the export."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import polars as pl
import yaml

from services.export.codelists import Codelist
from services.export.errors import ConformanceError
from services.export.spec import CDISC, Dataset

ISO8601 = r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
MAX_PER_RULE = 50
ROW = "_record"


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    dataset: str
    record: int | None
    usubjid: str | None
    variable: str | None
    value: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.dataset}" + (f" record {self.record}" if self.record else "")
        who = f" (USUBJID {self.usubjid})" if self.usubjid else ""
        what = (
            f" {self.variable}" + (f"={self.value!r}" if self.record else "")
            if self.variable
            else ""
        )
        return f"{self.rule} {where}{who}{what}: {self.message}"


@dataclass(frozen=True)
class Report:
    rules: int
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity != "error")

    def raise_on_errors(self) -> None:
        if self.errors:
            raise ConformanceError(self.errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules_checked": self.rules,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [asdict(f) for f in self.findings],
        }


@cache
def rules() -> tuple[dict[str, Any], ...]:
    return tuple(yaml.safe_load((CDISC / "conformance.yaml").read_text())["rules"])


@dataclass(frozen=True)
class Context:
    frames: dict[str, pl.DataFrame]
    specs: dict[str, Dataset]
    codelists: dict[str, Codelist]


Check = Callable[[str, pl.DataFrame, dict[str, Any], Context], pl.DataFrame]
"""(dataset, frame with ROW, rule, context) -> failing rows: ROW, variable, value."""


def _fail(
    frame: pl.DataFrame, mask: pl.Expr, variable: str, value: pl.Expr | None = None
) -> pl.DataFrame:
    shown = (pl.col(variable) if value is None else value).cast(pl.String)
    return frame.filter(mask).select(ROW, _variable=pl.lit(variable), _value=shown)


def _qualified(dataset: str, names: list[str]) -> set[str]:
    return {n.split(".", 1)[1] for n in names if n.split(".", 1)[0] == dataset}


def _required(name: str, frame: pl.DataFrame, rule: dict[str, Any], ctx: Context) -> pl.DataFrame:
    params = rule.get("params", {})
    skip = _qualified(name, rule.get("except", []))
    only = _qualified(name, params["only"]) if "only" in params else None
    parts = []
    for var in ctx.specs[name].variables:
        if (
            var.core not in params["core"]
            or var.name in skip
            or (only is not None and var.name not in only)
        ):
            continue
        if var.name not in frame.columns:
            parts.append(
                pl.DataFrame(
                    {ROW: [None], "_variable": [var.name], "_value": [None]}, schema=_SCHEMA
                )
            )
        else:
            parts.append(_fail(frame, pl.col(var.name).is_null(), var.name))
    return _concat(parts)


def _present(name: str, frame: pl.DataFrame, rule: dict[str, Any], ctx: Context) -> pl.DataFrame:
    missing = [
        v.name
        for v in ctx.specs[name].variables
        if v.core in rule["params"]["core"] and v.name not in frame.columns
    ]
    return pl.DataFrame(
        {ROW: [None] * len(missing), "_variable": missing, "_value": [None] * len(missing)},
        schema=_SCHEMA,
    )


def _in_codelist(column: str, frame: pl.DataFrame, codelist: Codelist) -> pl.Expr:
    if frame.schema[column].is_numeric():
        return pl.col(column).is_in([float(t) for t in codelist.values])
    return pl.col(column).is_in(codelist.values)


def _codelist(name: str, frame: pl.DataFrame, rule: dict[str, Any], ctx: Context) -> pl.DataFrame:
    parts = []
    for var in ctx.specs[name].variables:
        if var.codelist and var.name in frame.columns:
            ok = _in_codelist(var.name, frame, ctx.codelists[var.codelist])
            parts.append(_fail(frame, pl.col(var.name).is_not_null() & ~ok, var.name))
    return _concat(parts)


def _test_codelist(
    name: str, frame: pl.DataFrame, rule: dict[str, Any], ctx: Context
) -> pl.DataFrame:
    prefix = name[:2]
    code, result = (
        f"{prefix}TESTCD",
        f"{prefix}ORRES" if f"{prefix}ORRES" in frame.columns else f"{prefix}STRESC",
    )
    parts = []
    for test, spec in ctx.specs[name].tests.items():
        if spec.get("codelist") and result in frame.columns:
            terms = ctx.codelists[spec["codelist"]].values
            mask = (
                (pl.col(code) == test) & pl.col(result).is_not_null() & ~pl.col(result).is_in(terms)
            )
            parts.append(_fail(frame, mask, result))
    return _concat(parts)


def _iso8601(name: str, frame: pl.DataFrame, rule: dict[str, Any], ctx: Context) -> pl.DataFrame:
    parts = [
        _fail(frame, pl.col(v.name).is_not_null() & ~pl.col(v.name).str.contains(ISO8601), v.name)
        for v in ctx.specs[name].variables
        if v.type == "date" and v.name in frame.columns
    ]
    return _concat(parts)


def _duplicates(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    present = [c for c in columns if c in frame.columns]
    key = pl.concat_str([pl.col(c).cast(pl.String).fill_null("") for c in present], separator="|")
    return _fail(frame, pl.struct(present).is_duplicated(), "+".join(present), key)


def _unique_keys(
    name: str, frame: pl.DataFrame, rule: dict[str, Any], ctx: Context
) -> pl.DataFrame:
    return _duplicates(frame, list(ctx.specs[name].keys))


def _unique(name: str, frame: pl.DataFrame, rule: dict[str, Any], ctx: Context) -> pl.DataFrame:
    return _duplicates(frame, [c.replace("--", name[:2]) for c in rule["params"]["columns"]])


def _domain(name: str, frame: pl.DataFrame, rule: dict[str, Any], ctx: Context) -> pl.DataFrame:
    return _fail(frame, pl.col("DOMAIN") != name, "DOMAIN")


def _reference(name: str, frame: pl.DataFrame, rule: dict[str, Any], ctx: Context) -> pl.DataFrame:
    params = rule["params"]
    target = ctx.frames.get(params["target"])
    if target is None:
        return _concat([])
    columns, wanted = params["columns"], params["target_columns"]
    keys = target.select(
        [pl.col(t).alias(c) for c, t in zip(columns, wanted, strict=True)]
    ).unique()
    present = frame.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in columns))
    missing = present.join(keys, on=columns, how="anti")
    return _fail(missing, pl.lit(True), columns[-1])


def _supp_parent(
    name: str, frame: pl.DataFrame, rule: dict[str, Any], ctx: Context
) -> pl.DataFrame:
    found = []
    for (rdomain, idvar), rows in frame.group_by("RDOMAIN", "IDVAR"):
        parent = ctx.frames.get(str(rdomain))
        if parent is None or idvar not in parent.columns:
            found.append(_fail(rows, pl.lit(True), "RDOMAIN"))
            continue
        keys = parent.select("USUBJID", IDVARVAL=pl.col(str(idvar)).cast(pl.String)).unique()
        found.append(
            _fail(rows.join(keys, on=["USUBJID", "IDVARVAL"], how="anti"), pl.lit(True), "IDVARVAL")
        )
    return _concat(found)


def _traceable(name: str, frame: pl.DataFrame, rule: dict[str, Any], ctx: Context) -> pl.DataFrame:
    sources = [
        ctx.frames[d].select("USUBJID", SRCDOM=pl.lit(d), SRCSEQ=pl.col(f"{d}SEQ"))
        for d in ctx.frames
        if {f"{d}SEQ", "USUBJID"} <= set(ctx.frames[d].columns) and len(d) == 2
    ]
    known = (
        pl.concat(sources)
        if sources
        else pl.DataFrame(schema={"USUBJID": pl.String, "SRCDOM": pl.String, "SRCSEQ": pl.Int64})
    )
    missing = frame.join(known, on=["USUBJID", "SRCDOM", "SRCSEQ"], how="anti")
    value = pl.concat_str(
        [pl.col("SRCDOM").fill_null("?"), pl.col("SRCSEQ").cast(pl.String).fill_null("?")],
        separator=".",
    )
    return _fail(missing, pl.lit(True), "SRCDOM+SRCSEQ", value)


def _xpt_limits(name: str, frame: pl.DataFrame, rule: dict[str, Any], ctx: Context) -> pl.DataFrame:
    limits = rule["params"]
    parts = []
    spec = ctx.specs[name]
    for var in spec.variables:
        if (
            len(var.name) > limits["name"]
            or not var.name.isalnum()
            or len(var.label) > limits["label"]
        ):
            parts.append(
                pl.DataFrame(
                    {ROW: [None], "_variable": [var.name], "_value": [var.label]}, schema=_SCHEMA
                )
            )
        if var.type == "text" and var.name in frame.columns:
            text = pl.col(var.name)
            bad = (text.str.len_bytes() > limits["text_bytes"]) | ~text.str.contains(
                r"^[\x20-\x7E]*$"
            )
            parts.append(_fail(frame, text.is_not_null() & bad, var.name))
    if len(name) > limits["name"] or len(spec.label) > limits["label"]:
        parts.append(
            pl.DataFrame(
                {ROW: [None], "_variable": ["(dataset)"], "_value": [spec.label]}, schema=_SCHEMA
            )
        )
    return _concat(parts)


def _not_null_when(
    name: str, frame: pl.DataFrame, rule: dict[str, Any], ctx: Context
) -> pl.DataFrame:
    params = rule["params"]
    when = pl.all_horizontal(pl.col(c) == v for c, v in params["when"].items())
    return _fail(frame, when & pl.col(params["column"]).is_null(), params["column"])


_SCHEMA = {ROW: pl.UInt32, "_variable": pl.String, "_value": pl.String}

CHECKS: dict[str, Check] = {
    "required": _required,
    "present": _present,
    "codelist": _codelist,
    "test_codelist": _test_codelist,
    "iso8601": _iso8601,
    "unique_keys": _unique_keys,
    "unique": _unique,
    "domain": _domain,
    "reference": _reference,
    "supp_parent": _supp_parent,
    "traceable": _traceable,
    "xpt_limits": _xpt_limits,
    "not_null_when": _not_null_when,
}


def _concat(parts: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat([p.cast(_SCHEMA) for p in parts]) if parts else pl.DataFrame(schema=_SCHEMA)


def check(
    frames: dict[str, pl.DataFrame],
    specs: dict[str, Dataset],
    codelists: dict[str, Codelist],
    only: set[str] | None = None,
) -> Report:
    """Every rule on every dataset it names (``only``: the datasets being exported; the others
    in ``frames`` serve as references, e.g. SDTM for ADaM traceability)."""
    ctx = Context(frames, specs, codelists)
    findings: list[Finding] = []
    targets = [n for n in frames if n in specs and (only is None or n in only)]
    for rule in rules():
        kind = CHECKS[rule["kind"]]
        names = (
            targets if rule["datasets"] == "*" else [n for n in rule["datasets"] if n in targets]
        )
        for name in names:
            frame = frames[name].with_row_index(ROW, offset=1)
            failing = kind(name, frame, rule, ctx)
            if failing.is_empty():
                continue
            who = frame.select(ROW, "USUBJID") if "USUBJID" in frame.columns else None
            if who is not None:
                failing = failing.join(who, on=ROW, how="left")
            warning = rule["severity"] != "error"
            if warning:
                # A warning is about a variable, not a record: one finding per variable.
                failing = failing.group_by("_variable", maintain_order=True).agg(
                    pl.lit(None, pl.UInt32).alias(ROW),
                    pl.lit(None, pl.String).alias("USUBJID"),
                    pl.lit(None, pl.String).alias("_value"),
                    _count=pl.len(),
                )
            failing = failing.head(MAX_PER_RULE)
            for row in failing.iter_rows(named=True):
                findings.append(
                    Finding(
                        rule=rule["id"],
                        severity=rule["severity"],
                        dataset=name,
                        record=row[ROW],
                        usubjid=row.get("USUBJID"),
                        variable=row["_variable"],
                        value=row["_value"],
                        message=f"{rule['message']} ({row['_count']} records)"
                        if warning
                        else rule["message"],
                    )
                )
    return Report(rules=len(rules()), findings=tuple(findings))
