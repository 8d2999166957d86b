"""Row validation, vectorised: raw text in, typed rows and reasons out.

Each field contributes checks in the order a person would fix them: required; for text, its
JSON type, then the characters it holds; length; the enum or the form of a code, date or
number, then its JSON type; range. A row is rejected by its first failing check in column
order (a short CSV row before any field, a missing change_reason after them all). The checks
are cheap booleans over every row; reasons are written only for the rows that failed.
Nothing here raises for a bad row: a rejected row is data.

JSON Lines values are strictly typed (``_json`` says what was sent): text fields take JSON
strings, integers JSON integer literals (``1``, not ``1.0`` nor ``"1"``), numbers JSON numbers,
booleans ``true``/``false``, lists JSON arrays. A value whose text would pass but whose type
does not is rejected as ``<field> must be a JSON integer, got "1"``.

Characters: C0 control characters other than tab and line feed, DEL, Unicode non-characters
(U+FDD0..U+FDEF and U+xFFFE/U+xFFFF) and, from JSON escapes, lone surrogates are rejected in
every free-text field (ids, names, reasons); fields with a fixed form (codes, dates, numbers)
reject them through that form. Line feeds inside a quoted CSV value, and other Unicode line
separators, are kept: they are how people write multi-line notes.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from schemas import TIMESTAMP_PATTERN, Contract, Field, polars_schema
from services.ingest.framing import JSON_TYPES, LINE, MISSING

TRUE, FALSE = "Y", "N"
_INT = r"^[+-]?[0-9]+(\.0+)?$"  # CSV whole numbers: 2, +2 and 2.0
_JSON_INT = r"^-?[0-9]+$"  # a JSON integer literal: 1, not 1.0 nor 1e0
_FLOAT = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_ELEMENT = r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?"
_LIST = rf"^\[({_ELEMENT}(,{_ELEMENT})*)?\]$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_CONTROL = r"[\x00-\x08\x0b-\x1f\x7f]"
_NONCHARACTER = (
    r"[\x{FDD0}-\x{FDEF}\x{FFFE}\x{FFFF}"
    + "".join(rf"\x{{{plane:X}FFFE}}\x{{{plane:X}FFFF}}" for plane in range(1, 17))
    + "]"
)
_NOT_TEXT = f"{_CONTROL}|{_NONCHARACTER}"
_NONCHARACTERS = "U+FDD0..U+FDEF, U+FFFE, U+FFFF or another U+xFFFE, U+xFFFF"
_SHOWN = 50  # characters of a bad value quoted in a reason

_EXPECTED = {
    "int": "a whole number",
    "float": "a number",
    "bool": "Y or N (true or false in JSON)",
    "date": "a date YYYY-MM-DD",
    "timestamp": "a UTC timestamp like 2025-03-04T10:15:00Z",
    "list_float": "null or a list of numbers",
}
_JSON_EXPECTED = {
    "int": ("number", "a JSON integer"),
    "float": ("number", "a JSON number"),
    "bool": ("boolean", "true or false (a JSON boolean)"),
    "list_float": ("array", "null or a JSON array of numbers"),
}
_JSON_STRING = ("string", "a JSON string")


@dataclass(frozen=True)
class _Check:
    field: pl.Expr  # the field a rejection names
    failed: pl.Expr  # true on the rows that fail
    reason: pl.Expr  # why, evaluated on failing rows only


def validate(raw: pl.DataFrame, contract: Contract) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split raw rows into (typed valid rows with ``_line``, rejections: _line, field, reason)."""
    json = JSON_TYPES in raw.columns
    checks = _row_checks(raw) + [c for f in contract.fields for c in _checks(f, json)]
    checks += _correction_checks(contract)
    first = pl.coalesce([pl.when(c.failed).then(pl.lit(i, pl.Int32)) for i, c in enumerate(checks)])
    parsed = raw.with_columns(
        *[_parse(f, json).alias(_value(f.name)) for f in contract.fields]
    ).with_columns(first.alias("_check"))

    failing = parsed.filter(pl.col("_check").is_not_null())
    rejected = [
        failing.filter(pl.col("_check") == i).select(
            LINE,
            checks[i].field.cast(pl.String).alias("field"),
            checks[i].reason.cast(pl.String).alias("reason"),
        )
        for i in sorted(failing["_check"].unique().to_list())
    ]
    empty = pl.DataFrame(schema={LINE: pl.Int64, "field": pl.String, "reason": pl.String})
    schema = polars_schema(contract)
    valid = parsed.lazy()
    if failing.height:  # lazily: only the typed columns are filtered
        valid = valid.filter(pl.col("_check").is_null())
    typed = valid.select(*[_typed(f, schema[f.name]) for f in contract.fields], LINE).collect()
    return typed, pl.concat([empty, *rejected]).sort(LINE)


def _value(name: str) -> str:
    return f"_value_{name}"


def _typed(f: Field, dtype: pl.DataType) -> pl.Expr:
    value = pl.col(_value(f.name))
    if f.default is not None:
        value = value.fill_null(f.default)
    return value.cast(dtype).alias(f.name)


def _parse(f: Field, json: bool) -> pl.Expr:
    """The typed value of a field's text, null where the text does not have the type's form
    (or, for a number, lies beyond the Int64 or Float64 range)."""
    raw = pl.col(f.name)
    match f.type:
        case "int":
            whole = raw.str.replace(r"\.0+$", "").cast(pl.Int64, strict=False)
            return pl.when(raw.str.contains(_INT)).then(whole)
        case "float":
            number = raw.cast(pl.Float64, strict=False)
            return pl.when(raw.str.contains(_FLOAT)).then(number)
        case "bool":
            yes, no = ([TRUE, "true"], [FALSE, "false"]) if json else ([TRUE], [FALSE])
            return pl.when(raw.is_in(yes)).then(True).when(raw.is_in(no)).then(False)
        case "date":
            day = raw.str.to_date("%Y-%m-%d", strict=False)
            return pl.when(raw.str.contains(_DATE)).then(day)
        case "timestamp":
            stamp = raw.str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", strict=False, time_zone="UTC")
            return pl.when(raw.str.contains(TIMESTAMP_PATTERN)).then(stamp)
        case "list_float":
            items = (
                raw.str.strip_chars("[]")
                .str.split(",")
                .list.eval(pl.element().cast(pl.Float64, strict=False))
            )
            empty = pl.lit([], pl.List(pl.Float64))
            return pl.when(raw == "[]").then(empty).when(raw.str.contains(_LIST)).then(items)
        case "list_string":
            return raw.str.split(";")
        case _:
            return raw


def _row_checks(raw: pl.DataFrame) -> list[_Check]:
    """A short CSV row: its columns cannot be trusted, so it fails before any field."""
    if MISSING not in raw.columns:
        return []
    missing = pl.col(MISSING)
    names = missing.str.split(", ")
    width = len([c for c in raw.columns if not c.startswith("_")])
    return [
        _Check(
            field=names.list.first(),
            failed=missing.is_not_null(),
            reason=pl.format(
                "row has {} of {} fields: missing {}",
                pl.lit(width) - names.list.len(),
                pl.lit(width),
                missing,
            ),
        )
    ]


def _checks(f: Field, json: bool) -> list[_Check]:
    """The checks of one field, in the order a person would fix them."""
    raw, value, name = pl.col(f.name), pl.col(_value(f.name)), pl.lit(f.name)
    present = raw.is_not_null()
    got = pl.lit(", got ") + _shown(raw)
    checks: list[_Check] = []

    def check(failed: pl.Expr, reason: pl.Expr | str) -> None:
        checks.append(_Check(name, failed, pl.lit(reason) if isinstance(reason, str) else reason))

    if f.required:
        check(raw.is_null(), f"{f.name} is required; fill it in")
    if json:
        check(
            _json_type(f) == "lone_surrogate",
            pl.lit(f"{f.name} holds a lone surrogate (an unpaired \\uD800-\\uDFFF escape), ")
            + pl.lit("which is not a character; send valid Unicode text, got ")
            + _shown(raw),
        )
    if f.type == "string":
        # Text: the JSON type first (an array is not a long id), then what the text holds.
        if json:
            check(present & _wrong_json_type(f, raw), _json_reason(f, raw))
        control = raw.str.extract(f"({_CONTROL})", 1)
        check(
            present & raw.str.contains(_NOT_TEXT),
            pl.when(control.is_not_null())
            .then(pl.lit(f"{f.name} contains the control character 0x") + control.str.encode("hex"))
            .otherwise(pl.lit(f"{f.name} contains a Unicode non-character ({_NONCHARACTERS})"))
            + pl.lit(", which is not text; remove it"),
        )
    if f.max_length is not None:
        length = raw.str.len_chars()
        check(
            present & (length > f.max_length),
            pl.format(
                "{} must be at most {} characters, got {} characters; shorten it",
                name,
                pl.lit(f.max_length),
                length,
            ),
        )
    if f.type == "enum":
        check(
            present & ~raw.is_in(f.values),
            pl.lit(f"{f.name} must be one of {'|'.join(f.values)}") + got,
        )
    if f.type in _EXPECTED:
        check(
            present & value.is_null() & _has_form(f, raw),
            pl.lit(f"{f.name} must be {_bounds(f)}") + got,
        )
        check(present & value.is_null(), pl.lit(f"{f.name} must be {_EXPECTED[f.type]}") + got)
    if json and f.type != "string":
        # Codes, dates and numbers: a value whose text passes but whose JSON type does not
        # ("1" for 1, "Y" for true, 1.0 for an integer).
        check(present & _wrong_json_type(f, raw), _json_reason(f, raw))
    checks.extend(_range_checks(f, raw, value))
    return checks


def _json_type(f: Field) -> pl.Expr:
    return pl.col(JSON_TYPES).struct.field(f.name)


def _wrong_json_type(f: Field, raw: pl.Expr) -> pl.Expr:
    sent = _JSON_EXPECTED.get(f.type, _JSON_STRING)[0]
    wrong = _json_type(f) != sent
    return wrong | ~raw.str.contains(_JSON_INT) if f.type == "int" else wrong


def _json_reason(f: Field, raw: pl.Expr) -> pl.Expr:
    """``<field> must be <JSON type>, got <value as JSON>``: a string is shown in quotes."""
    words = _JSON_EXPECTED.get(f.type, _JSON_STRING)[1]
    quoted = pl.lit('"') + _shown(raw) + pl.lit('"')
    shown = pl.when(_json_type(f) == "string").then(quoted).otherwise(_shown(raw))
    return pl.lit(f"{f.name} must be {words}, got ") + shown


def _has_form(f: Field, raw: pl.Expr) -> pl.Expr:
    """True when a number has the form of its type, so a null value means out of range."""
    if f.type == "int":
        return raw.str.contains(_INT)
    if f.type == "float":
        return raw.str.contains(_FLOAT)
    return pl.lit(False)


def _range_checks(f: Field, raw: pl.Expr, value: pl.Expr) -> list[_Check]:
    name, got = pl.lit(f.name), pl.lit(", got ") + _shown(raw)
    if f.type == "list_float":
        checks = []
        if f.length is not None:
            checks.append(
                _Check(
                    name,
                    value.list.len() != f.length,
                    pl.lit(f"{f.name} must have {f.length} numbers") + got,
                )
            )
        if f.min is not None:
            checks.append(
                _Check(
                    name,
                    value.list.min() < f.min,
                    pl.lit(f"{f.name} sizes must be >= {_num(f.min)} (negative size)") + got,
                )
            )
        if f.max is not None:
            checks.append(
                _Check(
                    name,
                    value.list.max() > f.max,
                    pl.lit(f"{f.name} sizes must be <= {_num(f.max)}") + got,
                )
            )
        return checks
    if f.type not in ("int", "float") or (f.min is None and f.max is None):
        return []
    low = f.min if f.min is not None else float("-inf")
    high = f.max if f.max is not None else float("inf")
    outside = ~value.is_between(low, high) | ~value.cast(pl.Float64).is_finite()
    return [_Check(name, outside, pl.lit(f"{f.name} must be {_bounds(f)}") + got)]


def _bounds(f: Field) -> str:
    if f.min is not None and f.max is not None:
        return f"{_num(f.min)}-{_num(f.max)}"
    if f.min is not None:
        return f">= {_num(f.min)}"
    if f.max is not None:
        return f"<= {_num(f.max)}"
    return "within the range of a 64-bit number"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _shown(raw: pl.Expr) -> pl.Expr:
    """A value as quoted in a reason: control characters masked, a long value cut."""
    clean = raw.str.replace_all(r"[\x00-\x1f\x7f]", "\ufffd")
    cut = clean.str.slice(0, _SHOWN) + pl.format("... ({} characters)", raw.str.len_chars())
    return pl.when(raw.str.len_chars() > _SHOWN).then(cut).otherwise(clean)


def _correction_checks(contract: Contract) -> list[_Check]:
    """DATA_TRANSFER.md: a correction (version > 1) or a deletion must say why."""
    if contract.version_field is None or "change_reason" not in contract.columns:
        return []
    version = pl.col(_value(contract.version_field))
    missing = pl.col("change_reason").is_null()
    field = pl.lit("change_reason")
    return [
        _Check(
            field,
            missing & (version > 1),
            pl.format(
                "change_reason is required for a correction ({} {}); say why the record changed",
                pl.lit(contract.version_field),
                version,
            ),
        ),
        _Check(
            field,
            missing & (pl.col(_value("deleted")) == True),  # noqa: E712 (a column, not a bool)
            pl.lit("change_reason is required when deleted = Y; say why the record is retired"),
        ),
    ]
