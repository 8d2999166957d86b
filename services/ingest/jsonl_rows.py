"""JSON Lines transfer files into rows of raw text, with the JSON type of every value.

Strict types need to know what was sent, not what it converts to: ``"1"``, ``1`` and ``1.0``
are three different values for an integer field. So each value arrives as its text (strings
decoded and trimmed, numbers as the digits sent, ``true``/``false``, arrays as compact JSON)
plus its JSON type in the ``_json`` struct; validation checks the type against the contract.

The common line, a flat object (strings without escapes, numbers, literals, arrays of
numbers), is checked by one regular expression and cut into values by key, all vectorised.
Any other line (escapes, nested values, NaN, keys to refuse, invalid JSON) is read by
``json_line`` in Python, one line at a time.
"""

from __future__ import annotations

import re

import polars as pl

from schemas import Contract
from services.ingest.errors import EmptyFileError
from services.ingest.framing import JSON_TYPES, LINE, check_columns, physical_lines
from services.ingest.json_line import Typed, parse_line

_WS = r"[ \t]*"
_STRING = r'"[^"\\\x00-\x1f]*"'
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_ATOM = rf"(?:{_NUMBER}|true|false|null)"
_ARRAY = rf"\[{_WS}(?:{_ATOM}(?:{_WS},{_WS}{_ATOM})*)?{_WS}\]"
_PAIR = rf"{_STRING}{_WS}:{_WS}(?:{_STRING}|{_ATOM}|{_ARRAY})"
_FLAT = rf"^{_WS}\{{{_WS}(?:{_PAIR}(?:{_WS},{_WS}{_PAIR})*)?{_WS}\}}{_WS}$"
_KEY_END = rf'"{_WS}:'


def read_jsonl(file: str, data: bytes, contract: Contract) -> pl.DataFrame:
    """Raw text rows of a normalised JSON Lines file: contract columns, ``_line``, ``_json``."""
    text = pl.col("text")
    lines = (
        physical_lines(data)
        .to_frame()
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(LINE))
        .filter(text.str.strip_chars() != "")
    )
    if lines.height == 0:
        raise EmptyFileError(file, "the file is empty", "send the export with its rows")
    columns = contract.columns
    tokens = lines.with_columns(
        *[text.str.extract(_value_after(name), 1).alias(name) for name in columns],
        _flat=text.str.contains(_FLAT),
        _keys=text.str.count_matches(_KEY_END),
    )
    # A flat line is read here unless it holds a key outside the contract, or one twice.
    found = pl.sum_horizontal([pl.col(name).is_not_null() for name in columns])
    fast = tokens.filter(pl.col("_flat") & (pl.col("_keys") == found))
    slow = lines.join(fast.select(LINE), on=LINE, how="anti")

    rows = [_typed_columns(fast, contract)]
    seen = {name for name in columns if fast[name].is_not_null().any()}
    if slow.height:
        rows.append(_slow_rows(file, slow, contract, seen))
    check_columns(file, [name for name in columns if name in seen], contract)
    return pl.concat(rows).sort(LINE)


def _value_after(name: str) -> str:
    """The value token after ``"name":`` in a line already known to be flat."""
    return rf'"{re.escape(name)}"{_WS}:{_WS}("[^"]*"|\[[^\]]*\]|[^,}} \t]+)'


def _typed_columns(tokens: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """(text, type) of each value token: strings unquoted and trimmed, arrays compacted."""
    texts, types = [], []
    for name in contract.columns:
        token = pl.col(name)
        first = token.str.slice(0, 1)
        kind = (
            pl.when(token.is_null() | (token == "null"))
            .then(pl.lit("null"))
            .when(first == '"')
            .then(pl.lit("string"))
            .when(first == "[")
            .then(pl.lit("array"))
            .when(token.is_in(["true", "false"]))
            .then(pl.lit("boolean"))
            .otherwise(pl.lit("number"))
        )
        inner = token.str.strip_prefix('"').str.strip_suffix('"').str.strip_chars()
        value = (
            pl.when(first == '"')
            .then(pl.when(inner.str.len_bytes() > 0).then(inner))
            .when(first == "[")
            .then(token.str.replace_all(r"[ \t]", ""))
            .when(token != "null")
            .then(token)
        )
        texts.append(value.alias(name))
        types.append(kind.alias(name))
    return tokens.select(*texts, LINE, pl.struct(types).alias(JSON_TYPES))


def _slow_rows(file: str, lines: pl.DataFrame, contract: Contract, seen: set[str]) -> pl.DataFrame:
    """Rows of the lines the vectorised reader left, parsed one by one."""
    columns = contract.columns
    texts: dict[str, list[str | None]] = {name: [] for name in columns}
    types: dict[str, list[str]] = {name: [] for name in columns}
    numbers = lines[LINE].to_list()
    for number, line in zip(numbers, lines["text"].to_list(), strict=True):
        record = parse_line(file, number, line, contract.source)
        unknown = [key for key in record if key not in columns]
        if unknown:
            check_columns(file, list(record), contract)
        seen.update(record)
        for name in columns:
            kind, value = record.get(name, _ABSENT)
            types[name].append(kind)
            texts[name].append(value)
    frame = pl.DataFrame(
        {**texts, LINE: numbers}, schema={**dict.fromkeys(columns, pl.String), LINE: pl.Int64}
    )
    kinds = pl.DataFrame(types, schema=dict.fromkeys(columns, pl.String))
    return frame.with_columns(kinds.to_struct(JSON_TYPES))


_ABSENT: Typed = ("null", None)
