"""Row validation, vectorised: text values in, typed rows and reasons out.

Each field of the contract contributes one expression that yields a reason or null; a row's
first reason (in column order) rejects it. Nothing here raises for a bad row: a rejected row
is data.
"""

from __future__ import annotations

import polars as pl

from schemas import TIMESTAMP_PATTERN, Contract, Field, polars_schema
from services.ingest.read import LINE

TRUE, FALSE = "Y", "N"
_NUMBER = r"-?\d+(\.\d+)?([eE][+-]?\d+)?"
_LIST = rf"^\[({_NUMBER}(,{_NUMBER})*)?\]$"


def _parse(f: Field) -> pl.Expr:
    """The typed value of a field, null where the text does not parse."""
    raw = pl.col(f.name)
    match f.type:
        case "int":
            # Non-finite and out-of-range numbers (nan, inf, 1e30) are not whole numbers.
            as_float = raw.cast(pl.Float64, strict=False)
            whole = as_float.is_finite() & (as_float == as_float.round())
            return pl.when(whole).then(as_float).cast(pl.Int64, strict=False)
        case "float":
            # nan and inf are not numbers a source can send (and JSON cannot hold them).
            number = raw.cast(pl.Float64, strict=False)
            return pl.when(number.is_finite()).then(number)
        case "bool":
            return pl.when(raw == TRUE).then(True).when(raw == FALSE).then(False)
        case "date":
            # The strict shape first: chrono alone would take 2025-1-5.
            return pl.when(raw.str.contains(r"^\d{4}-\d{2}-\d{2}$")).then(
                raw.str.to_date("%Y-%m-%d", strict=False)
            )
        case "timestamp":
            stamp = raw.str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", strict=False, time_zone="UTC")
            return pl.when(raw.str.contains(TIMESTAMP_PATTERN)).then(stamp)
        case "list_float":
            items = (
                raw.str.strip_chars("[]")
                .str.split(",")
                .list.eval(pl.element().cast(pl.Float64, strict=False))
            )
            return pl.when(raw.str.contains(_LIST)).then(items)
        case "list_string":
            return raw.str.split(";")
        case _:
            return raw


_EXPECTED = {
    "int": "a whole number",
    "float": "a number",
    "bool": "Y or N (true or false in JSON)",
    "date": "a date YYYY-MM-DD",
    "timestamp": "a UTC timestamp like 2025-03-04T10:15:00Z",
    "list_float": "null or a list of numbers",
}


def _reason(f: Field) -> pl.Expr:
    """Why the field's value is not acceptable, or null."""
    raw, value = pl.col(f.name), _parse(f)
    got = pl.lit(", got ") + raw
    checks: list[tuple[pl.Expr, pl.Expr]] = []
    if f.required:
        checks.append((raw.is_null(), pl.lit(f"{f.name} is required; fill it in")))
    if f.type == "enum":
        checks.append(
            (
                raw.is_not_null() & ~raw.is_in(f.values),
                pl.lit(f"{f.name} must be one of {'|'.join(f.values)}") + got,
            )
        )
    if f.type in _EXPECTED:
        checks.append(
            (
                raw.is_not_null() & value.is_null(),
                pl.lit(f"{f.name} must be {_EXPECTED[f.type]}") + got,
            )
        )
    if f.type == "list_float":
        if f.length is not None:
            checks.append(
                (
                    value.list.len() != f.length,
                    pl.lit(f"{f.name} must have {f.length} numbers") + got,
                )
            )
        if f.min is not None:
            checks.append(
                (
                    value.list.min() < f.min,
                    pl.lit(f"{f.name} sizes must be >= {f.min:g} (negative size)") + got,
                )
            )
    elif f.min is not None or f.max is not None:
        low = f.min if f.min is not None else float("-inf")
        high = f.max if f.max is not None else float("inf")
        bounds = f"{low:g}-{high:g}" if f.max is not None else f">= {low:g}"
        checks.append((~value.is_between(low, high), pl.lit(f"{f.name} must be {bounds}") + got))
    if not checks:
        return pl.lit(None, pl.String)
    expr = pl.when(checks[0][0]).then(checks[0][1])
    for condition, message in checks[1:]:
        expr = expr.when(condition).then(message)
    return expr.otherwise(None)


def _correction_reason(contract: Contract) -> pl.Expr:
    """DATA_TRANSFER.md: a correction (version > 1) or a deletion must say why."""
    if contract.version_field is None or "change_reason" not in contract.columns:
        return pl.lit(None, pl.String)
    version = pl.col(contract.version_field).cast(pl.Int64, strict=False)
    missing = pl.col("change_reason").is_null()
    return (
        pl.when(missing & (version > 1))
        .then(
            pl.lit("change_reason is required for a correction (")
            + pl.lit(contract.version_field)
            + pl.lit(" ")
            + version.cast(pl.String)
            + pl.lit("); say why the record changed")
        )
        .when(missing & (pl.col("deleted") == TRUE))
        .then(pl.lit("change_reason is required when deleted = Y; say why the record is retired"))
    )


def validate(raw: pl.DataFrame, contract: Contract) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split raw rows into (typed valid rows with ``_line``, rejections: _line, field, reason)."""
    candidates = [(f.name, _reason(f)) for f in contract.fields]
    candidates.append(("change_reason", _correction_reason(contract)))
    problem = pl.coalesce(
        [
            pl.when(reason.is_not_null()).then(pl.struct(field=pl.lit(name), reason=reason))
            for name, reason in candidates
        ]
    )
    checked = raw.with_columns(_problem=problem)
    rejected = checked.filter(pl.col("_problem").is_not_null()).select(
        LINE, pl.col("_problem").struct.unnest()
    )
    schema = polars_schema(contract)
    typed = checked.filter(pl.col("_problem").is_null()).select(
        *[
            _parse(f).fill_null(f.default).cast(schema[f.name]).alias(f.name)
            if f.default is not None
            else _parse(f).cast(schema[f.name]).alias(f.name)
            for f in contract.fields
        ],
        LINE,
    )
    return typed, rejected
